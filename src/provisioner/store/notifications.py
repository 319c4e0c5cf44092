"""Waking the readers of an operation's events: PostgreSQL ``LISTEN``/``NOTIFY``, or polling.

Writers: every transaction that inserts events (``insert_events``) also sends, on PostgreSQL,
``NOTIFY provisioner_events`` with each operation id as the payload. The notification is part of
the transaction: delivered when it commits (so the rows are visible to whoever reads on being
woken), never when it rolls back, once per operation however many events it inserted.

Readers (``EventWakeups``, one per replica): at most one connection that ``LISTEN``s, opened
while someone waits for events and closed a minute after the last one stopped; each notification
wakes the readers of that operation, who then read the events table after their last id. A
notification is a hint, never data: the table is the source of truth. While that connection is
down, readers poll (``poll_seconds``); when it is (re)established they are all woken, since
what was committed meanwhile was not notified to them. SQLite (one process) always polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog
from sqlalchemy import ColumnElement, Connection, func, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from provisioner.background import cancel_and_wait
from provisioner.store.database import Database
from provisioner.store.models import events
from provisioner.store.records import Prepared, insert_columns

log = structlog.get_logger(__name__)

CHANNEL = "provisioner_events"
APPLICATION_NAME = "provisioner-event-listener"
_PING_TIMEOUT = 5.0  # seconds for the listening connection to answer a check
# The columns an event row is inserted with (its id is the database's).
EVENT_COLUMNS = tuple(column.name for column in events.c if column.name != "id")
_INSERT = Prepared(insert_columns(events, EVENT_COLUMNS))
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', id) FROM unnest(CAST(:ids AS text[])) AS id")


def insert_events(conn: Connection, rows: Sequence[dict[str, Any]], *, notify: bool = True) -> None:
    """Insert event rows and, on PostgreSQL, notify their operations' readers at commit
    (``notify`` False: the transaction has notified them already, see ``notifying``)."""
    if not rows:
        return
    _INSERT.execute(conn, rows)
    if notify and conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"ids": sorted({row["operation_id"] for row in rows})})


def notifying(operation_id: ColumnElement[str]) -> ColumnElement[Any]:
    """``pg_notify`` of an operation id, for a statement's RETURNING on PostgreSQL: the engine's
    state writes notify in the statement that checks their fence, a round trip fewer than a
    separate ``SELECT pg_notify``."""
    return func.pg_notify(CHANNEL, operation_id)


class Wakeup:
    """One reader of one operation's events: woken when they may have changed."""

    __slots__ = ("_event", "_hub", "operation_id")

    def __init__(self, hub: EventWakeups, operation_id: str) -> None:
        self.operation_id = operation_id
        self._hub: EventWakeups | None = hub
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        """Until woken, or until it is time to look anyway (a wake-up that came since the last
        wait returns at once). Read the events *after* this returns."""
        seconds = self._hub.timeout() if self._hub is not None else 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()

    def close(self) -> None:
        """Stop being woken (once; later calls do nothing)."""
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.unsubscribe(self)


class _Listening(Protocol):
    async def start(self, dispatch: Callable[[str], None]) -> None: ...

    async def check(self, seconds: float) -> None:
        """Deliver notifications for up to ``seconds``; raise if the connection is gone."""
        ...


class EventWakeups:
    """Dispatches event notifications to the readers waiting for them, in this replica."""

    def __init__(
        self,
        database: Database,
        *,
        poll_seconds: float,
        safety_seconds: float = 15.0,
        linger_seconds: float = 60.0,
        check_seconds: float = 10.0,
    ) -> None:
        self._database = database
        self._poll = poll_seconds
        # Even with notifications, a reader looks again this often: a last resort that costs
        # one small query per reader per interval.
        self._safety = max(safety_seconds, poll_seconds)
        self._linger = linger_seconds
        self._check = check_seconds
        self._readers: dict[str, set[Wakeup]] = {}
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        """Start listening when readers come (PostgreSQL only; call within the event loop)."""
        if not self._database.is_sqlite:
            self._task = asyncio.create_task(self._run(), name="event-listener")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._wake_all()

    @property
    def readers(self) -> int:
        return sum(len(group) for group in self._readers.values())

    def subscribe(self, operation_id: str) -> Wakeup:
        """Be woken when events of ``operation_id`` are committed. Subscribe *before* reading
        them, and ``close`` the wake-up when done."""
        wakeup = Wakeup(self, operation_id)
        self._readers.setdefault(operation_id, set()).add(wakeup)
        self._wanted.set()
        return wakeup

    def unsubscribe(self, wakeup: Wakeup) -> None:
        group = self._readers.get(wakeup.operation_id)
        if group is not None:
            group.discard(wakeup)
            if not group:
                del self._readers[wakeup.operation_id]
        if not self._readers:
            self._wanted.clear()

    def timeout(self) -> float:
        """How long a reader waits before looking anyway."""
        return self._safety if self.connected else self._poll

    def _dispatch(self, operation_id: str) -> None:
        for wakeup in self._readers.get(operation_id, ()):
            wakeup.set()

    def _wake_all(self) -> None:
        for group in self._readers.values():
            for wakeup in group:
                wakeup.set()

    # --- the listening connection ---------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            await self._wanted.wait()
            try:
                await self._listen_while_wanted()
                backoff = 0.1
            except Exception as exc:  # the connection could not be made or was lost
                log.warning(
                    "event_listener_lost", error=type(exc).__name__, retry_in=round(backoff, 2)
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _listen_while_wanted(self) -> None:
        engine = _listening_engine(self._database)
        try:
            async with engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection
                listening = _listening(raw)
                await listening.start(self._dispatch)
                self.connected = True
                log.info("event_listener_connected")
                # What was committed while nobody listened was not notified: look now.
                self._wake_all()
                try:
                    await self._serve(listening)
                finally:
                    self.connected = False
                    self._wake_all()  # back to polling at once, not after a long wait
        finally:
            await engine.dispose()

    async def _serve(self, listening: _Listening) -> None:
        """Deliver notifications until nobody has wanted them for ``linger_seconds``."""
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while True:
            await listening.check(self._check)
            if self._readers:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since >= self._linger:
                return


def _listening_engine(database: Database) -> Any:
    url = database.url
    application = (
        {"server_settings": {"application_name": APPLICATION_NAME}}
        if url.get_driver_name() == "asyncpg"
        else {"application_name": APPLICATION_NAME}
    )
    return create_async_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args=application,
        hide_parameters=True,
    )


def _listening(raw: Any) -> _Listening:
    if type(raw).__module__.startswith("asyncpg"):
        return _AsyncpgListening(raw)
    return _PsycopgListening(raw)


class _AsyncpgListening:
    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self, dispatch: Callable[[str], None]) -> None:
        def lost(_connection: Any) -> None:
            if not self._lost.done():
                self._lost.set_result(None)

        self._connection.add_termination_listener(lost)
        await self._connection.add_listener(
            CHANNEL, lambda _conn, _pid, _channel, payload: dispatch(payload)
        )

    async def check(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._lost), seconds)
        if self._lost.done() or self._connection.is_closed():
            raise ConnectionError("the listening connection was closed")
        # A connection cut without a word (a dead host) shows only when used.
        async with asyncio.timeout(_PING_TIMEOUT):
            await self._connection.fetchval("SELECT 1")


class _PsycopgListening:
    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._dispatch: Callable[[str], None] | None = None

    async def start(self, dispatch: Callable[[str], None]) -> None:
        self._dispatch = dispatch
        await self._connection.execute(f"LISTEN {CHANNEL}")

    async def check(self, seconds: float) -> None:
        assert self._dispatch is not None
        async for notification in self._connection.notifies(timeout=seconds):
            self._dispatch(notification.payload)
        async with asyncio.timeout(_PING_TIMEOUT):
            await self._connection.execute("SELECT 1")
