"""Background tasks of a running service (heartbeats, sweeps, listeners, refreshers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from provisioner.errors import DatabaseUnavailableError

log = structlog.get_logger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing if None) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def every(
    interval_seconds: float, work: Callable[[], Awaitable[object]], *, name: str
) -> None:
    """Run ``work`` every ``interval_seconds``, for ever: a database that cannot be reached is
    logged as ``{name}_failed`` and any other error as ``{name}_crashed``, and the loop goes on."""
    while True:
        try:
            await work()
        except DatabaseUnavailableError as exc:
            log.warning(f"{name}_failed", error=str(exc))
        except Exception:
            log.exception(f"{name}_crashed")
        await asyncio.sleep(interval_seconds)
