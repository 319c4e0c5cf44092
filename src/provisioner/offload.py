"""Keeping the event loop responsive: work on large data runs in a worker thread.

Parsing, encoding or building requests for a large descriptor takes milliseconds to seconds,
during which an event loop would answer nothing (health checks, status reads). Below the
threshold the hop to a thread costs more than the work, so it runs in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Bytes of input above which the work goes to a thread. Measured on a busy 2-core machine: the
# descriptor loaders read YAML at ~0.5 KiB and JSON at ~8 KiB per millisecond, and a hop to a
# thread costs ~0.15 ms. The thread holds the GIL while it parses, but hands it back to the
# event loop every switch interval (5 ms), so requests keep being answered meanwhile.
OFFLOAD_BYTES = 4 * 1024


async def offload(size: int, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)``, in a worker thread when ``size`` bytes are at stake."""
    if size > OFFLOAD_BYTES:
        return await asyncio.to_thread(function, *args, **kwargs)
    return function(*args, **kwargs)
