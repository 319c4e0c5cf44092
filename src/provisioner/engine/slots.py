"""Bounds on adapter calls in flight: one global limit and one per adapter, in FIFO order.

A slot is held as a ``Ticket``, whose ``release`` gives it back once however often it is called,
so that every path that ends a task can release without asking whether another already did.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(slots=True)
class _Waiter:
    key: str
    limit: int | None
    future: asyncio.Future[None]


class Ticket:
    """One slot, held until ``release``."""

    __slots__ = ("_key", "_slots")

    def __init__(self, slots: Slots, key: str) -> None:
        self._slots: Slots | None = slots
        self._key = key

    @property
    def held(self) -> bool:
        return self._slots is not None

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release(self._key)


class Slots:
    """A counting semaphore with a second, per-key limit.

    ``try_acquire`` grants at once or not at all, so a finishing task can hand its slot to a
    successor within the same database write; ``acquire`` waits. Nobody jumps the queue: a
    release grants the waiters that fit before anyone else can ask, so every waiter left in the
    queue is blocked by a limit (the global one, or its own adapter's), and a caller that fits
    takes only what no waiter can use.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_use = 0
        self._per_key: defaultdict[str, int] = defaultdict(int)
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per key: the slots held and the callers waiting for one (for metrics: a snapshot,
        computed when asked, so that taking and giving slots back costs nothing more)."""
        usage = {key: (held, 0) for key, held in self._per_key.items()}
        for waiter in self._waiters:
            if not waiter.future.done():
                held, waiting = usage.get(waiter.key, (0, 0))
                usage[waiter.key] = (held, waiting + 1)
        return usage

    def _fits(self, key: str, limit: int | None) -> bool:
        return self._in_use < self._limit and (limit is None or self._per_key[key] < limit)

    def _take(self, key: str) -> None:
        self._in_use += 1
        self._per_key[key] += 1

    def try_acquire(self, key: str, limit: int | None) -> Ticket | None:
        """Take a slot if one is free for this key."""
        if not self._fits(key, limit):
            return None
        self._take(key)
        return Ticket(self, key)

    async def acquire(self, key: str, limit: int | None) -> Ticket:
        """Wait for a slot; waiters are served in arrival order where their limits allow."""
        ticket = self.try_acquire(key, limit)
        if ticket is not None:
            return ticket
        waiter = _Waiter(key, limit, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(key)  # granted just as we were cancelled: give it back
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        return Ticket(self, key)

    def release(self, key: str) -> None:
        """Give a slot back and grant it to the first waiters that fit."""
        self._in_use -= 1
        self._per_key[key] -= 1
        if self._per_key[key] == 0:
            del self._per_key[key]
        self._grant()

    def _grant(self) -> None:
        index = 0
        while index < len(self._waiters) and self._in_use < self._limit:
            waiter = self._waiters[index]
            if waiter.future.done():  # its task was cancelled while queued
                del self._waiters[index]
            elif self._fits(waiter.key, waiter.limit):
                del self._waiters[index]
                self._take(waiter.key)
                waiter.future.set_result(None)
            else:
                index += 1
