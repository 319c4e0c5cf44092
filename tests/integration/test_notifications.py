"""LISTEN/NOTIFY for event streams, on PostgreSQL with both drivers: inserted events notify
their operation when (and only when) the transaction commits; a replica's one listening
connection wakes the readers of that operation, and comes back when it is cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from provisioner.domain.status import OperationStatus
from provisioner.engine.ports import Event, StateWrite
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.notifications import (
    APPLICATION_NAME,
    CHANNEL,
    EventWakeups,
    insert_events,
)
from provisioner.store.operations import SqlOperationStore, event_values
from provisioner.store.submissions import Submissions
from tests.integration.test_store import deploy_of
from tests.support import wait_until
from tests.unit.fakes import T0

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["asyncpg", "psycopg"])
async def database(request: pytest.FixtureRequest, postgres_url: str) -> AsyncIterator[Database]:
    url = postgres_url.replace("+asyncpg", f"+{request.param}", 1)
    db = Database(url)
    await migrate(db)
    yield db
    await db.dispose()


@pytest.fixture
async def listener(postgres_url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads notified on the channel, as a plain asyncpg client sees them."""
    url = make_url(postgres_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    payloads: asyncio.Queue[str] = asyncio.Queue()
    await connection.add_listener(CHANNEL, lambda *args: payloads.put_nowait(args[-1]))
    yield payloads
    await connection.close()


def event_rows(operation_id: str, count: int) -> list[dict[str, Any]]:
    return [
        event_values(operation_id, Event(None, "RUNNING", "RUNNING", T0), None)
        for _ in range(count)
    ]


async def drained(payloads: asyncio.Queue[str], wait: float = 0.5) -> list[str]:
    """What arrives within ``wait`` seconds, sorted."""
    got: list[str] = []
    try:
        while True:
            got.append(await asyncio.wait_for(payloads.get(), wait))
    except TimeoutError:
        return sorted(got)


async def test_events_notify_each_of_their_operations_once_at_commit(
    database: Database, listener: asyncio.Queue[str]
) -> None:
    one = await Submissions(database).submit(deploy_of("urn:u:notify-1"))
    other = await Submissions(database).submit(deploy_of("urn:u:notify-2"))
    assert await drained(listener) == sorted([one.id, other.id])  # each submission's event
    await database.transaction(
        lambda conn: insert_events(conn, event_rows(one.id, 3) + event_rows(other.id, 2))
    )
    assert await drained(listener) == sorted([one.id, other.id])


async def test_a_rolled_back_transaction_notifies_nobody(
    database: Database, listener: asyncio.Queue[str]
) -> None:
    created = await Submissions(database).submit(deploy_of("urn:u:notify-3"))
    await drained(listener)

    def fails(conn: Any) -> None:
        insert_events(conn, event_rows(created.id, 1))
        raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        await database.transaction(fails)
    assert await drained(listener) == []


async def terminate_listener(database: Database) -> int:
    def work(conn: Any) -> int:
        return int(
            conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    # This database's only: another test session's listeners are not ours.
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": APPLICATION_NAME},
            ).scalar_one()
        )

    return await database.transaction(work)


async def woken(wakeup: Any, seconds: float = 10.0) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await wakeup.wait()
    except TimeoutError:
        return False
    return True


async def test_readers_are_woken_by_notifications_and_after_the_connection_is_cut(
    database: Database,
) -> None:
    """Only the readers of the operation are woken; a cut connection is made again, and its
    readers are woken when it is (what was committed meanwhile was not notified)."""
    created = await Submissions(database).submit(deploy_of("urn:u:notify-4"))
    unrelated = await Submissions(database).submit(deploy_of("urn:u:notify-5"))
    wakeups = EventWakeups(database, poll_seconds=60, safety_seconds=60, check_seconds=0.2)
    wakeups.start()
    try:
        mine = wakeups.subscribe(created.id)
        theirs = wakeups.subscribe(unrelated.id)

        async def connected() -> bool:
            return wakeups.connected

        await wait_until(connected)
        await mine.wait()  # the wake-up every reader gets when the connection is made
        await theirs.wait()
        await database.transaction(lambda conn: insert_events(conn, event_rows(created.id, 1)))
        assert await woken(mine)
        assert not await woken(theirs, 0.5)

        assert await terminate_listener(database) == 1
        assert await woken(mine)  # disconnected: woken, to poll
        await wait_until(connected)
        await woken(mine, 1.0)  # and woken again once connected
        await database.transaction(lambda conn: insert_events(conn, event_rows(created.id, 1)))
        assert await woken(mine)
        mine.close()
        theirs.close()
        assert wakeups.readers == 0
    finally:
        await wakeups.close()
    assert not wakeups.connected


async def test_an_engine_write_notifies_from_its_fence_check_only_while_the_fence_holds(
    database: Database, listener: asyncio.Queue[str]
) -> None:
    """The engine's state writes notify in the statement that checks their fence (one
    notification per operation, however many writes a batch holds); a write whose fence no
    longer holds writes nothing and notifies nobody."""
    store = SqlOperationStore(database)
    one = await Submissions(database).submit(deploy_of("urn:u:notify-fence-1"))
    other = await Submissions(database).submit(deploy_of("urn:u:notify-fence-2"))
    now = datetime.now(UTC)
    claimed = await store.claim(owner="r1/a", replica_id="r1", limit=10, lease_seconds=60, now=now)
    await drained(listener)  # the submissions' and the claims' own

    def write(index: int, events: int) -> StateWrite:
        operation = claimed[index]
        event = Event(None, OperationStatus.RUNNING, OperationStatus.RUNNING, now)
        return StateWrite(fence=operation.fence, header=operation.header, events=[event] * events)

    assert await store.apply([write(0, 2), write(0, 1), write(1, 1)], lease_seconds=60) == set()
    assert await drained(listener) == sorted([one.id, other.id])
    assert await store.apply([write(0, 1)], lease_seconds=60) == set()
    assert await drained(listener) == [one.id]

    later = datetime.now(UTC) + timedelta(seconds=61)  # the writes renewed the lease till now
    await store.claim(owner="r2/a", replica_id="r2", limit=10, lease_seconds=60, now=later)
    await drained(listener)
    assert await store.apply([write(0, 1)], lease_seconds=60) == {one.id}
    assert await drained(listener) == []
