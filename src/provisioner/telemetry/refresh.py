"""The database-wide gauges, read every few seconds by one task per replica rather than on
every scrape (each replica reads the same figures: aggregate them with ``max``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from provisioner.background import cancel_and_wait, every
from provisioner.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from provisioner.store.activity import Activity


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
        self._task = asyncio.create_task(
            every(self._interval, self._refresh, name="metrics_refresh"), name="metrics-refresh"
        )

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _refresh(self) -> None:
        self._metrics.set_activity(await self._read())
