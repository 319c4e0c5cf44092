"""How late the event loop runs what it was asked to run: a measure of how busy a replica is.

A replica whose loop is late is short of CPU: taking more operations would only make every
request it serves (status reads included) wait longer, so it leaves new work to other
replicas, or to later, until the loop catches up.
"""

from __future__ import annotations

import asyncio

from provisioner.background import cancel_and_wait


class LoopLag:
    """A smoothed measure of event-loop lag, sampled by a background task."""

    def __init__(self, *, interval_seconds: float = 0.05, smoothing: float = 0.3) -> None:
        self._interval = interval_seconds
        self._smoothing = smoothing
        self._task: asyncio.Task[None] | None = None
        self._smoothed = 0.0
        self._last = 0.0
        self.samples = 0

    @property
    def seconds(self) -> float:
        """The lag now: the larger of the last sample and the smoothed trend."""
        return max(self._last, self._smoothed)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._last = max(0.0, loop.time() - due)
            self._smoothed += self._smoothing * (self._last - self._smoothed)
            self.samples += 1
