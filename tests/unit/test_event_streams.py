"""Event streams over fakes of the event log and the wake-ups: what is read when, the bound
per replica, long trails in pieces, a database that goes away."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from provisioner.api.streaming import wants_event_stream
from provisioner.domain.status import OperationStatus
from provisioner.errors import AtCapacityError, DatabaseUnavailableError, NotFoundError
from provisioner.service.streams import BATCH, EventStreams, StreamEnd
from provisioner.store.views import EventView

AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeLog:
    """An operation's status and events in memory; ``failures`` fail the next reads."""

    def __init__(self) -> None:
        self.status: OperationStatus | None = OperationStatus.RUNNING
        self.events: list[EventView] = []
        self.reads = 0
        self.failures = 0

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            number = len(self.events) + 1
            self.events.append(EventView(None, None, "RUNNING", AT, id=number, operation_id="op"))

    async def status_and_events(
        self, operation_id: str, *, after: int, limit: int
    ) -> tuple[OperationStatus | None, list[EventView]]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailableError("away")
        if operation_id != "op":
            return None, []
        return self.status, [e for e in self.events if e.id > after][:limit]


class FakeSubscription:
    def __init__(self, wakeups: FakeWakeups) -> None:
        self._wakeups = wakeups
        self.closed = False

    async def wait(self) -> None:
        await self._wakeups.woken.get()

    def close(self) -> None:
        self.closed = True
        self._wakeups.open -= 1


class FakeWakeups:
    """Woken by hand: ``wake()`` lets one wait return."""

    def __init__(self) -> None:
        self.woken: asyncio.Queue[None] = asyncio.Queue()
        self.open = 0

    def subscribe(self, operation_id: str) -> FakeSubscription:
        self.open += 1
        return FakeSubscription(self)

    def wake(self) -> None:
        self.woken.put_nowait(None)


async def collect(items: object, count: int) -> list[object]:
    got: list[object] = []
    async for item in items:  # type: ignore[attr-defined]
        got.append(item)
        if len(got) == count:
            break
    return got


async def test_a_stream_reads_again_only_when_woken_and_ends_after_the_last_event() -> None:
    log, wakeups = FakeLog(), FakeWakeups()
    log.add(2)
    streams = EventStreams(log=log, wakeups=wakeups, max_streams=5)
    stream = await streams.open("op", after=0)
    items = stream.items()
    assert [e.id for e in await collect(items, 2)] == [1, 2]  # type: ignore[attr-defined]
    waiting = asyncio.create_task(anext(items))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert log.reads == 1  # nothing is read again until woken
    log.add()
    log.status = OperationStatus.SUCCEEDED
    wakeups.wake()
    third = await waiting
    assert isinstance(third, EventView)
    assert third.id == 3
    assert await anext(items) == StreamEnd("op", OperationStatus.SUCCEEDED)
    with pytest.raises(StopAsyncIteration):
        await anext(items)
    assert streams.open_streams == 0
    assert wakeups.open == 0


async def test_a_long_trail_is_sent_in_pieces_without_waiting() -> None:
    log, wakeups = FakeLog(), FakeWakeups()
    log.add(BATCH * 2 + 3)
    log.status = OperationStatus.FAILED
    stream = await EventStreams(log=log, wakeups=wakeups, max_streams=1).open("op", after=5)
    items = [item async for item in stream.items()]
    assert [e.id for e in items[:-1]] == list(range(6, BATCH * 2 + 4))  # type: ignore[union-attr]
    assert items[-1] == StreamEnd("op", OperationStatus.FAILED)


async def test_streams_past_the_bound_are_refused_and_a_closed_one_frees_its_place() -> None:
    log, wakeups = FakeLog(), FakeWakeups()
    streams = EventStreams(log=log, wakeups=wakeups, max_streams=2, retry_after_seconds=7)
    first = await streams.open("op", after=0)
    await streams.open("op", after=0)
    with pytest.raises(AtCapacityError) as refused:
        await streams.open("op", after=0)
    assert refused.value.retry_after_seconds == 7
    first.close()
    first.close()  # once only
    assert streams.open_streams == 1
    await streams.open("op", after=0)


async def test_an_unknown_operation_takes_no_place() -> None:
    log, wakeups = FakeLog(), FakeWakeups()
    streams = EventStreams(log=log, wakeups=wakeups, max_streams=1)
    with pytest.raises(NotFoundError):
        await streams.open("missing", after=0)
    assert streams.open_streams == 0
    assert wakeups.open == 0


async def test_while_the_database_is_away_the_stream_waits_instead_of_failing() -> None:
    log, wakeups = FakeLog(), FakeWakeups()
    stream = await EventStreams(log=log, wakeups=wakeups, max_streams=1).open("op", after=0)
    items = stream.items()
    pending = asyncio.create_task(anext(items))
    await asyncio.sleep(0)
    log.failures = 2
    log.add()
    for _ in range(3):
        wakeups.wake()
    item = await pending
    assert isinstance(item, EventView)
    assert item.id == 1
    assert log.reads == 4


def request(accept: str | None) -> Request:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return Request({"type": "http", "method": "GET", "headers": headers, "path": "/"})


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        ("text/event-stream", True),
        ("text/event-stream, application/json", True),
        ("application/json;q=0.5, text/event-stream", True),
        ("Text/Event-Stream", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/event-stream;q=0.9", False),
        ("text/event-stream;q=0", False),
        ("text/event-stream;q=bad", False),
    ],
)
def test_the_stream_is_chosen_by_the_accept_header(accept: str | None, stream: bool) -> None:
    assert wants_event_stream(request(accept)) is stream
