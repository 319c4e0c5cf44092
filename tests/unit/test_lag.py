"""The event-loop lag measure behind a replica's backpressure."""

from __future__ import annotations

import asyncio
import time

from provisioner.engine.lag import LoopLag


async def samples_taken(lag: LoopLag, count: int) -> None:
    target = lag.samples + count
    while lag.samples < target:  # noqa: ASYNC110 - each pass lets the sampler run
        await asyncio.sleep(0)


def hold_the_loop(seconds: float) -> None:
    """CPU-bound work that keeps the event loop from running anything else."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_an_idle_loop_has_no_lag_and_a_blocked_one_does() -> None:
    """Work that holds the loop shows at once as lag; the lag fades once the loop is free."""
    lag = LoopLag(interval_seconds=0.01)
    lag.start()
    try:
        # Thresholds are relative to the 300 ms the loop is held, so that neither the other
        # threads of the test session nor a loaded machine (a process waiting tens of ms for
        # a core) can make this flaky: a sample 150 ms late is the hold, not the machine.
        await samples_taken(lag, 3)
        assert lag.seconds < 0.15

        hold_the_loop(0.3)
        await samples_taken(lag, 1)
        assert lag.seconds > 0.25

        await samples_taken(lag, 30)
        assert lag.seconds < 0.15
    finally:
        await lag.stop()
