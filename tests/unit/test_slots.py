"""Bounded adapter calls in flight (``provisioner.engine.slots``): FIFO granting, per-key limits
and cancellation that never leaks a slot. The event loop is driven step by step, never slept."""

from __future__ import annotations

import asyncio

import pytest

from provisioner.engine.slots import Slots


async def settle(steps: int = 5) -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(steps):
        await asyncio.sleep(0)


async def take(slots: Slots, key: str, limit: int | None, granted: list[str], name: str) -> None:
    await slots.acquire(key, limit)
    granted.append(name)


def queue(
    slots: Slots, key: str, limit: int | None, granted: list[str], name: str
) -> asyncio.Task[None]:
    return asyncio.create_task(take(slots, key, limit, granted, name), name=name)


# --- try_acquire -------------------------------------------------------------------------------


def test_try_acquire_grants_up_to_the_global_limit() -> None:
    """Two slots are granted, the third request is not, and ``in_use`` counts them."""
    slots = Slots(2)

    assert [slots.try_acquire("a", None) is not None for _ in range(3)] == [True, True, False]
    assert slots.in_use == 2


def test_a_released_slot_can_be_taken_again() -> None:
    """After ``release`` the count drops and ``try_acquire`` succeeds again."""
    slots = Slots(1)
    assert slots.try_acquire("a", None)

    slots.release("a")

    assert slots.in_use == 0
    assert slots.try_acquire("a", None)


def test_try_acquire_respects_the_per_key_limit() -> None:
    """A key at its own limit is refused while other keys still get slots."""
    slots = Slots(10)
    assert slots.try_acquire("a", 1)

    assert not slots.try_acquire("a", 1)
    assert slots.try_acquire("b", 1)
    assert slots.in_use == 2


def test_the_per_key_count_is_shared_by_calls_with_the_same_key() -> None:
    """``limit`` 2 on one key allows two, whichever call took the first."""
    slots = Slots(10)

    assert [slots.try_acquire("a", 2) is not None for _ in range(3)] == [True, True, False]


async def test_a_released_slot_goes_to_the_queue_before_any_newcomer() -> None:
    """A release grants the queued waiter at once; a ``try_acquire`` right after finds none."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("a", None)
    waiter = queue(slots, "b", None, granted, "b")
    await settle()

    slots.release("a")
    assert not slots.try_acquire("c", None)
    await waiter
    assert granted == ["b"]


# --- acquire -----------------------------------------------------------------------------------


async def test_acquire_returns_at_once_when_a_slot_is_free() -> None:
    """A free slot is granted without queueing."""
    slots = Slots(1)

    await slots.acquire("a", None)

    assert slots.in_use == 1


async def test_waiters_are_granted_in_arrival_order() -> None:
    """Each release grants exactly one waiter: the one that has waited longest."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    tasks = []
    for name in ["first", "second", "third"]:
        tasks.append(queue(slots, "k", None, granted, name))
        await settle()
    assert granted == []

    for expected in (["first"], ["first", "second"], ["first", "second", "third"]):
        slots.release("k")
        await settle()
        assert granted == expected
        assert slots.in_use == 1
    await asyncio.gather(*tasks)


async def test_a_release_hands_the_slot_to_the_waiter_before_anyone_else_can_take_it() -> None:
    """The slot is granted inside ``release``, so a ``try_acquire`` right after gets nothing."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    waiter = queue(slots, "k", None, granted, "waiter")
    await settle()

    slots.release("k")

    assert not slots.try_acquire("k", None)
    await waiter
    assert granted == ["waiter"]


async def test_a_waiter_blocked_by_its_key_limit_does_not_hold_up_later_waiters() -> None:
    """On release, a waiter whose key is at its limit is passed over for one that fits."""
    slots = Slots(2)
    granted: list[str] = []
    assert slots.try_acquire("a", 1)
    assert slots.try_acquire("c", None)
    blocked = queue(slots, "a", 1, granted, "a2")
    await settle()
    other = queue(slots, "b", None, granted, "b")
    await settle()

    slots.release("c")
    await settle()

    assert granted == ["b"]
    slots.release("a")
    await asyncio.gather(blocked, other)
    assert granted == ["b", "a2"]


async def test_a_key_at_its_limit_does_not_block_another_key_with_free_slots() -> None:
    """With global slots free, a request for key b is granted while a waits for key a."""
    slots = Slots(3)
    granted: list[str] = []
    assert slots.try_acquire("a", 1)
    blocked = queue(slots, "a", 1, granted, "a2")
    await settle()

    other = queue(slots, "b", None, granted, "b")
    await settle()

    try:
        assert granted == ["b"]
    finally:
        blocked.cancel()
        other.cancel()
        await asyncio.gather(blocked, other, return_exceptions=True)


# --- cancellation ------------------------------------------------------------------------------


async def test_a_cancelled_waiter_leaves_the_queue_without_a_slot() -> None:
    """Cancelling the only waiter leaves no queue entry: the next release frees the slot."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    waiter = queue(slots, "k", None, granted, "w")
    await settle()

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release("k")

    assert slots.in_use == 0
    assert slots.try_acquire("k", None)  # no dead waiter left in the queue
    assert granted == []


async def test_a_cancelled_waiter_is_skipped_for_the_next_one() -> None:
    """The slot released after a cancellation goes to the following waiter."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    first = queue(slots, "k", None, granted, "first")
    await settle()
    second = queue(slots, "k", None, granted, "second")
    await settle()

    first.cancel()
    await settle()
    slots.release("k")
    await second

    assert granted == ["second"]
    assert slots.in_use == 1
    assert first.cancelled()


async def test_a_waiter_cancelled_but_not_yet_resumed_is_not_granted() -> None:
    """A release between ``cancel()`` and the task noticing it grants the next waiter instead."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    first = queue(slots, "k", None, granted, "first")
    await settle()
    second = queue(slots, "k", None, granted, "second")
    await settle()

    first.cancel()
    slots.release("k")  # before the cancelled task has run again
    await asyncio.gather(first, second, return_exceptions=True)

    assert granted == ["second"]
    assert slots.in_use == 1


async def test_a_waiter_granted_while_being_cancelled_gives_the_slot_back() -> None:
    """Granted by ``release`` and cancelled before resuming: the slot returns to the pool."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", 1)
    waiter = queue(slots, "k", 1, granted, "w")
    await settle()

    slots.release("k")  # grants the waiter (its future now holds a result)...
    assert slots.in_use == 1
    waiter.cancel()  # ...which is cancelled before it could resume
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert granted == []
    assert slots.in_use == 0
    assert slots.try_acquire("k", 1)  # neither the global nor the per-key count leaked


async def test_a_slot_given_back_on_cancellation_goes_to_the_next_waiter() -> None:
    """The slot a cancelled grantee returns is granted on to whoever waits behind it."""
    slots = Slots(1)
    granted: list[str] = []
    assert slots.try_acquire("k", None)
    first = queue(slots, "k", None, granted, "first")
    await settle()
    second = queue(slots, "k", None, granted, "second")
    await settle()

    slots.release("k")  # grants first
    first.cancel()
    await asyncio.gather(first, second, return_exceptions=True)

    assert granted == ["second"]
    assert slots.in_use == 1


def test_a_ticket_gives_its_slot_back_once_however_often_it_is_released() -> None:
    """Every path that ends a task may release its ticket; only the first release counts."""
    slots = Slots(2)
    first = slots.try_acquire("k", 1)
    second = slots.try_acquire("j", None)
    assert first is not None
    assert second is not None
    first.release()
    first.release()
    assert slots.in_use == 1
    assert not first.held
    assert second.held


# --- usage, for metrics ----------------------------------------------------------------------


async def test_usage_counts_the_slots_held_and_the_callers_waiting_per_key() -> None:
    slots = Slots(3)
    held = [slots.try_acquire("a", 2), slots.try_acquire("a", 2), slots.try_acquire("b", None)]
    granted: list[str] = []
    waiting = [queue(slots, "a", 2, granted, "a3"), queue(slots, "b", None, granted, "b2")]
    await settle()
    assert slots.usage() == {"a": (2, 1), "b": (1, 1)}
    waiting[1].cancel()  # a cancelled waiter no longer counts
    await settle()
    assert slots.usage() == {"a": (2, 1), "b": (1, 0)}
    for ticket in held:
        assert ticket is not None
        ticket.release()
    await settle()
    assert granted == ["a3"]
    assert slots.usage() == {"a": (1, 0)}
