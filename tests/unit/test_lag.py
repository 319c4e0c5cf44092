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
        # Thresholds are relative to the 60 ms the loop is held, so that other threads of
        # the test session competing for the interpreter cannot make this flaky.
        await samples_taken(lag, 3)
        assert lag.seconds < 0.03

        hold_the_loop(0.06)
        await samples_taken(lag, 1)
        assert lag.seconds > 0.04

        await samples_taken(lag, 30)
        assert lag.seconds < 0.03
    finally:
        await lag.stop()
