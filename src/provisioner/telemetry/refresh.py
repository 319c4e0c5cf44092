"""The database-wide gauges, read every few seconds by one task per replica rather than on
every scrape (each replica reads the same figures: aggregate them with ``max``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from provisioner.background import cancel_and_wait
from provisioner.errors import DatabaseUnavailableError
from provisioner.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from provisioner.store.activity import Activity

log = structlog.get_logger(__name__)


class ActivityRefresher:
    """Sets ``Metrics``' database gauges from ``read()`` every ``interval_seconds``."""

    def __init__(
        self,
        read: Callable[[], Awaitable[Activity]],
        metrics: Metrics,
        *,
        interval_seconds: float,
    ) -> None:
        self._read = read
        self._metrics = metrics
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-refresh")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                self._metrics.set_activity(await self._read())
            except DatabaseUnavailableError as exc:
                log.warning("metrics_refresh_failed", error=str(exc))
            except Exception:
                log.exception("metrics_refresh_crashed")
            await asyncio.sleep(self._interval)
