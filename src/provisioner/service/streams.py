"""Following an operation's audit trail live, on whichever replica runs it.

A stream reads the events table after its last event id, and waits to be woken (a notification
from the replica that wrote, or a poll) before reading again: the table is the source of truth,
so a stream resumed after an id (``Last-Event-ID``) misses nothing and repeats nothing. Event ids
of one operation grow in commit order (every transaction that adds events to an operation holds
its row's lock). When the operation has ended and every event is out, a ``StreamEnd`` closes the
stream. Each replica keeps at most ``max_streams`` open; past that, ``AtCapacityError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from provisioner.domain.status import OperationStatus
from provisioner.errors import AtCapacityError, DatabaseUnavailableError, NotFoundError
from provisioner.service.ports import EventLog, EventWakeups, Subscription
from provisioner.store.views import EventView

BATCH = 500  # events read at once: a long trail is sent in pieces, without holding it all


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The operation ended with ``status``; nothing more will come (None: it was removed)."""

    operation_id: str
    status: OperationStatus | None


class EventStreams:
    """Opens event streams, within this replica's bound."""

    def __init__(
        self,
        *,
        log: EventLog,
        wakeups: EventWakeups,
        max_streams: int,
        retry_after_seconds: int = 5,
    ) -> None:
        self._log = log
        self._wakeups = wakeups
        self._max = max_streams
        self._retry_after = retry_after_seconds
        self.open_streams = 0

    async def open(self, operation_id: str, *, after: int) -> EventStream:
        """A stream of the events after ``after``: ``NotFoundError`` if there is no such
        operation, ``AtCapacityError`` if this replica has ``max_streams`` open already.
        ``close`` it (its ``items`` do when they end)."""
        if self.open_streams >= self._max:
            raise AtCapacityError(
                f"this replica already streams {self._max} event streams "
                "(PROVISIONER_MAX_EVENT_STREAMS); retry later or read /events as JSON",
                retry_after_seconds=self._retry_after,
            )
        self.open_streams += 1
        # Subscribed before the first read: what is committed after it wakes the stream.
        stream = EventStream(
            self, self._log, operation_id, after, self._wakeups.subscribe(operation_id)
        )
        try:
            await stream.first_read()
        except BaseException:
            stream.close()
            raise
        return stream

    def _closed(self) -> None:
        self.open_streams -= 1


class EventStream:
    """One client's stream of one operation's events."""

    def __init__(
        self,
        streams: EventStreams,
        log: EventLog,
        operation_id: str,
        after: int,
        subscription: Subscription,
    ) -> None:
        self.operation_id = operation_id
        self.last_id = after
        self._streams: EventStreams | None = streams
        self._log = log
        self._subscription = subscription
        self._batch: tuple[OperationStatus | None, list[EventView]] = (None, [])

    async def first_read(self) -> None:
        self._batch = await self._read()
        if self._batch[0] is None:
            raise NotFoundError(f"operation {self.operation_id} does not exist")

    async def items(self) -> AsyncIterator[EventView | StreamEnd]:
        """The events in order, then a ``StreamEnd`` once the operation has ended."""
        try:
            status, events = self._batch
            while True:
                for event in events:
                    yield event
                    self.last_id = event.id
                if len(events) < BATCH:
                    if status is None or not status.is_active:
                        yield StreamEnd(self.operation_id, status)
                        return
                    await self._subscription.wait()
                status, events = await self._read_again()
        finally:
            self.close()

    async def _read(self) -> tuple[OperationStatus | None, list[EventView]]:
        return await self._log.status_and_events(self.operation_id, after=self.last_id, limit=BATCH)

    async def _read_again(self) -> tuple[OperationStatus | None, list[EventView]]:
        """The next read; while the database is out of reach, the stream waits (the client
        sees keep-alives) instead of failing."""
        while True:
            try:
                return await self._read()
            except DatabaseUnavailableError:
                await self._subscription.wait()

    def close(self) -> None:
        """Give the stream's place back (once; later calls do nothing)."""
        streams, self._streams = self._streams, None
        if streams is not None:
            self._subscription.close()
            streams._closed()
