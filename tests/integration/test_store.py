"""The SQL store on SQLite and PostgreSQL: migrations, the one-active-operation rule,
claiming, leases and fencing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, select, update

from provisioner.domain.descriptor import parse_descriptor
from provisioner.domain.plan import plan_deploy
from provisioner.domain.status import OperationType, TaskStatus
from provisioner.engine.ports import Event, OperationHeader, StateWrite
from provisioner.errors import DatabaseUnavailableError, OperationActiveError, ReleaseChangedError
from provisioner.service.ids import new_operation_id
from provisioner.store.database import Database
from provisioner.store.migrate import current_revision, head_revision, migrate
from provisioner.store.models import Base, operations
from provisioner.store.operations import SqlOperationStore
from provisioner.store.queries import Queries
from provisioner.store.submissions import NewOperation, Submissions
from provisioner.store.views import OperationView
from tests.support import component, unit, wait_until

LEASE = 30.0


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-psycopg", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """Both drivers of PostgreSQL run the store tier (asyncpg and psycopg)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    url = request.getfixturevalue("postgres_url")
    if request.param == "postgres-psycopg":
        return url.replace("postgresql+asyncpg://", "postgresql+psycopg://", 1)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


def deploy_of(unit_id: str) -> NewOperation:
    """A new DEPLOY of a unit with two components (b depends on a)."""
    parsed = parse_descriptor(unit(unit_id, [component("a"), component("b", depends_on=["a"])]))
    return NewOperation(
        header=OperationHeader(
            id=new_operation_id(),
            type=OperationType.DEPLOY,
            deployment_unit_id=unit_id,
            environment="development",
            version="1.0.0",
            remove_data=False,
            created_at=datetime.now(UTC),
        ),
        plan=plan_deploy(parsed.unit),
        descriptor_json="{}",
    )


async def submit(database: Database, unit_id: str) -> OperationView:
    return await Submissions(database).submit(deploy_of(unit_id))


async def test_migrations_reach_head_and_match_the_models(database: Database) -> None:
    """Upgrading twice is harmless, and autogenerate finds no drift from the models."""
    await migrate(database)
    assert await current_revision(database) == head_revision()
    diff = await database.transaction(
        lambda conn: compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    )
    assert diff == []


async def test_one_active_operation_per_release_even_when_submitted_at_once(
    database_url: str, database: Database
) -> None:
    """Two replicas submitting the same deploy at the same instant: one wins, one gets 409."""
    other = Database(database_url)
    try:
        results = await asyncio.gather(
            Submissions(database).submit(deploy_of("u1")),
            Submissions(other).submit(deploy_of("u1")),
            return_exceptions=True,
        )
    finally:
        await other.dispose()
    winners = [r.id for r in results if isinstance(r, OperationView)]
    losers = [r for r in results if isinstance(r, OperationActiveError)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert losers[0].operation_id == winners[0]


async def test_the_database_itself_refuses_a_second_active_operation(database: Database) -> None:
    """The partial unique index holds even for writes that skip the service's checks."""
    await submit(database, "u2")
    now = datetime.now(UTC)
    with pytest.raises(Exception, match=r"(?i)unique"):
        await database.transaction(
            lambda conn: conn.execute(
                insert(operations).values(
                    id=new_operation_id(),
                    type="DEPLOY",
                    deployment_unit_id="u2",
                    environment="development",
                    status="RUNNING",
                    remove_data=False,
                    cancel_requested=False,
                    fencing=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        )


async def test_a_refused_statement_names_no_parameter_values(database: Database) -> None:
    """Errors are logged: no engine puts a statement's parameters (privateInfo, in the tasks
    table) in its exception messages."""
    operation_id = (await submit(database, "u3")).id
    now = datetime.now(UTC)
    values = {
        "id": operation_id,  # taken: the primary key refuses the row
        "type": "DEPLOY",
        "deployment_unit_id": "u4",
        "environment": "development",
        "version": "s3cret",
        "status": "SUCCEEDED",
        "remove_data": False,
        "cancel_requested": False,
        "fencing": 0,
        "created_at": now,
        "updated_at": now,
    }
    with pytest.raises(Exception, match=r"(?i)unique|duplicate") as caught:
        await database.transaction(lambda conn: conn.execute(insert(operations).values(**values)))

    assert "s3cret" not in str(caught.value)
    assert "parameters hidden" in str(caught.value)


@pytest.mark.parametrize("inline", [False, True], ids=["handed-over", "inline"])
async def test_a_transaction_that_fails_or_breaks_its_connection_leaves_writes_working(
    database: Database, inline: bool
) -> None:
    """The SQLite writer keeps its connection between transactions: one that raises is rolled
    back and the connection serves the next; one whose connection broke gets a new one. The
    same whether the writer thread or the caller's ran it (``inline``)."""

    def inserts_then_fails(conn: Connection) -> None:
        conn.execute(update(operations).where(operations.c.id == created.id).values(error="no"))
        raise RuntimeError("refused")

    def breaks(conn: Connection) -> None:
        conn.invalidate()
        raise RuntimeError("connection lost")

    created = await submit(database, "u-writer")
    mine = operations.c.id == created.id

    async def error() -> str | None:
        async with database.read() as conn:
            found: str | None = (
                await conn.execute(select(operations.c.error).where(mine))
            ).scalar_one()
            return found

    for number, failing in enumerate((inserts_then_fails, breaks)):
        with pytest.raises(RuntimeError):
            await database.transaction(failing, inline=inline)
        assert await error() == (None if number == 0 else "written 0")  # rolled back
        await database.transaction(
            lambda conn, n=number: conn.execute(
                update(operations).where(mine).values(error=f"written {n}")
            ),
            inline=inline,
        )
        assert await error() == f"written {number}"


async def test_a_small_sqlite_write_runs_inline_unless_the_connection_is_busy(
    sqlite_url: str,
) -> None:
    """An ``inline`` transaction runs on the caller's thread when the writer's connection is
    free; while the writer thread holds it, the inline one waits its turn there instead of
    blocking the event loop, and both commit."""
    database = Database(sqlite_url)
    await migrate(database)
    created = await submit(database, "u-inline")
    mine = operations.c.id == created.id
    entered, release = threading.Event(), threading.Event()

    def write(value: str, *, hold: bool = False) -> Callable[[Connection], int]:
        def work(conn: Connection) -> int:
            conn.execute(update(operations).where(mine).values(error=value))
            if hold:
                entered.set()
                assert release.wait(60)
            return threading.get_ident()

        return work

    try:
        assert await database.transaction(write("inline"), inline=True) == threading.get_ident()
        holding = asyncio.ensure_future(database.transaction(write("held", hold=True)))
        assert await asyncio.to_thread(entered.wait, 60)
        queued = asyncio.ensure_future(database.transaction(write("queued"), inline=True))
        await asyncio.sleep(0)  # let it choose; the loop runs on: it did not block it
        assert not queued.done()
        release.set()
        assert await holding != threading.get_ident()
        assert await queued != threading.get_ident()  # it ran in the writer thread, after
        async with database.read() as conn:
            assert (await conn.execute(select(operations.c.error).where(mine))).scalar() == (
                "queued"
            )
    finally:
        release.set()
        await database.dispose()


async def test_an_operation_is_claimed_by_one_owner_and_fenced_after_a_takeover(
    database: Database,
) -> None:
    """A claim takes a pending operation once; after the lease lapses another owner takes it
    with a higher fence, and the first owner's writes are refused."""
    store = SqlOperationStore(database)
    operation_id = (await submit(database, "u3")).id
    now = datetime.now(UTC)

    first = await store.claim(owner="r1/a", replica_id="r1", limit=10, lease_seconds=LEASE, now=now)
    assert [c.header.id for c in first] == [operation_id]
    assert [t.component_id for t in first[0].tasks] == ["u3", "a", "b"]
    assert (
        await store.claim(owner="r2/a", replica_id="r2", limit=10, lease_seconds=LEASE, now=now)
        == []
    )

    later = now + timedelta(seconds=LEASE + 1)
    second = await store.claim(
        owner="r2/a", replica_id="r2", limit=10, lease_seconds=LEASE, now=later
    )
    assert second[0].fence.token == first[0].fence.token + 1

    done = replace(first[0].tasks[0], status=TaskStatus.SUCCEEDED)
    stale = StateWrite(fence=first[0].fence, header=first[0].header, tasks=[done])
    assert await store.apply([stale], lease_seconds=LEASE) == {operation_id}
    fresh = StateWrite(
        fence=second[0].fence,
        header=second[0].header,
        events=[Event(None, "RUNNING", "RUNNING", later)],
    )
    assert await store.apply([fresh], lease_seconds=LEASE) == set()
    lost, _ = await store.renew_leases([first[0].fence], lease_seconds=LEASE, now=later)
    assert lost == {operation_id}


async def test_a_restarted_replica_takes_back_its_operations_at_once(database: Database) -> None:
    """Same replica id, new process: no need to wait for the lease to lapse."""
    store = SqlOperationStore(database)
    await submit(database, "u4")
    now = datetime.now(UTC)
    await store.claim(owner="r1/old", replica_id="r1", limit=10, lease_seconds=LEASE, now=now)
    assert (
        await store.claim(owner="r2/x", replica_id="r2", limit=10, lease_seconds=LEASE, now=now)
        == []
    )
    again = await store.claim(
        owner="r1/new", replica_id="r1", limit=10, lease_seconds=LEASE, now=now
    )
    assert len(again) == 1


async def test_a_handed_back_operation_is_claimable_at_once(database: Database) -> None:
    store = SqlOperationStore(database)
    await submit(database, "u5")
    now = datetime.now(UTC)
    claimed = await store.claim(
        owner="r1/a", replica_id="r1", limit=10, lease_seconds=LEASE, now=now
    )
    await store.release_leases([claimed[0].fence])
    taken = await store.claim(owner="r2/a", replica_id="r2", limit=10, lease_seconds=LEASE, now=now)
    assert [c.header.id for c in taken] == [claimed[0].header.id]


async def test_pending_operations_are_claimed_in_submission_order(database: Database) -> None:
    store = SqlOperationStore(database)
    submitted = [(await submit(database, f"order-{i}")).id for i in range(5)]
    now = datetime.now(UTC)
    first = await store.claim(owner="r/a", replica_id="r", limit=2, lease_seconds=LEASE, now=now)
    rest = await store.claim(owner="r/a", replica_id="r", limit=10, lease_seconds=LEASE, now=now)
    assert [c.header.id for c in first + rest] == submitted


async def test_a_cancel_request_is_seen_by_the_owner(database: Database) -> None:
    store = SqlOperationStore(database)
    operation_id = (await submit(database, "u6")).id
    now = datetime.now(UTC)
    claimed = await store.claim(owner="r/a", replica_id="r", limit=1, lease_seconds=LEASE, now=now)
    assert await Submissions(database).request_cancel(operation_id, now=now) == "RUNNING"
    lost, cancels = await store.renew_leases([claimed[0].fence], lease_seconds=None, now=now)
    assert (lost, cancels) == (set(), {operation_id})


async def test_a_batch_writes_what_holds_its_fence_and_drops_what_does_not(
    database: Database,
) -> None:
    """One transaction, two operations: the one taken over by another owner is refused, the
    other is written and its lease renewed."""
    store = SqlOperationStore(database)
    for unit_id in ("b1", "b2"):
        await submit(database, unit_id)
    now = datetime.now(UTC)
    mine = await store.claim(owner="r1/a", replica_id="r1", limit=2, lease_seconds=LEASE, now=now)
    later = now + timedelta(seconds=1)
    # r2 takes the second one over (handed back here; a lapsed lease works the same).
    stolen = mine[1]
    await store.release_leases([stolen.fence])
    taken = await store.claim(owner="r2/a", replica_id="r2", limit=1, lease_seconds=LEASE, now=now)
    assert [c.header.id for c in taken] == [stolen.header.id]

    writes = [
        StateWrite(
            fence=claimed.fence,
            header=claimed.header,
            events=[Event(None, "RUNNING", "RUNNING", later, {"batch": True})],
        )
        for claimed in mine
    ]
    assert await store.apply(writes, lease_seconds=LEASE) == {stolen.header.id}
    events = await Queries(database).events(mine[0].header.id, after=0, limit=100)
    assert events[-1].detail == {"batch": True}
    stolen_events = await Queries(database).events(stolen.header.id, after=0, limit=100)
    assert all(event.detail != {"batch": True} for event in stolen_events)


async def test_a_plan_made_against_a_release_that_moved_on_is_refused(database: Database) -> None:
    """``submit`` stores an operation planned against a release only if no operation was
    submitted there since the release was read: otherwise the request is planned again."""
    submissions = Submissions(database)
    before = await submissions.release_state("u7", "development")
    assert before.last_operation_id is None
    assert before.components == {}
    first = await submissions.submit(deploy_of("u7"), based_on=before)
    await submissions.request_cancel(first.id, now=datetime.now(UTC))
    with pytest.raises(ReleaseChangedError):
        await submissions.submit(deploy_of("u7"), based_on=before)
    now = await submissions.release_state("u7", "development")
    assert now.last_operation_id == first.id
    assert now.active_operation_id is None
    assert (await submissions.submit(deploy_of("u7"), based_on=now)).id != first.id


@pytest.fixture(
    params=[
        pytest.param("asyncpg", marks=pytest.mark.postgres),
        pytest.param("psycopg", marks=pytest.mark.postgres),
    ]
)
def postgres_driver_url(request: pytest.FixtureRequest, postgres_url: str) -> str:
    return postgres_url.replace("+asyncpg://", f"+{request.param}://", 1)


def _pause_inside_a_write(
    url: str, operation_id: str, locked: threading.Event, resume: threading.Event
) -> str:
    """In a thread of its own, as a replica would: lock the operation's row in a write
    transaction, then stop (as SIGSTOP would) until ``resume``; return how the write ended."""

    async def run() -> str:
        paused = Database(url, idle_transaction_timeout_seconds=1.0)

        def write(conn: Connection) -> None:
            conn.execute(
                update(operations)
                .where(operations.c.id == operation_id)
                .values(updated_at=datetime.now(UTC))
            )
            locked.set()
            resume.wait(120)  # blocks this thread: the session sits idle in its transaction

        try:
            await paused.transaction(write)
        except DatabaseUnavailableError:
            return "session ended"
        finally:
            await paused.dispose()
        return "committed"

    return asyncio.run(run())


async def test_a_replica_paused_inside_a_write_does_not_block_the_takeover(
    postgres_driver_url: str,
) -> None:
    """Paused with the operation's row locked, a replica would keep every other one from taking
    its operation over (claims skip locked rows) for as long as the pause lasts; the server
    ends the idle transaction, and the takeover happens while the replica is still paused."""
    database = Database(postgres_driver_url)
    store = SqlOperationStore(database)
    operation_id = (await submit(database, "p1")).id
    long_ago = datetime.now(UTC) - timedelta(seconds=10 * LEASE)
    await store.claim(owner="r1/a", replica_id="r1", limit=1, lease_seconds=LEASE, now=long_ago)
    locked, resume = threading.Event(), threading.Event()
    paused = asyncio.create_task(
        asyncio.to_thread(_pause_inside_a_write, postgres_driver_url, operation_id, locked, resume)
    )
    try:
        await wait_until(lambda: asyncio.to_thread(locked.wait, 0.1))

        async def taken_over() -> bool:
            claimed = await store.claim(
                owner="r2/a", replica_id="r2", limit=1, lease_seconds=LEASE, now=datetime.now(UTC)
            )
            return [c.header.id for c in claimed] == [operation_id]

        await wait_until(taken_over)
        assert not resume.is_set()  # r1 is still paused
    finally:
        resume.set()
        outcome = await paused
        await database.dispose()
    assert outcome == "session ended"
