"""The SQL store on SQLite and PostgreSQL: migrations, the one-active-operation rule,
claiming, leases and fencing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.engine import make_url

from provisioner.domain.descriptor import parse_descriptor
from provisioner.domain.plan import plan_deploy
from provisioner.domain.status import ComponentStatus, OperationType, TaskStatus
from provisioner.engine.ports import (
    COMPONENT_PROGRESS,
    TASK_PROGRESS,
    ClaimedOperation,
    ComponentState,
    Event,
    OperationHeader,
    StateWrite,
)
from provisioner.errors import (
    DatabaseUnavailableError,
    OperationActiveError,
    ReleaseChangedError,
    UnstorableValueError,
)
from provisioner.service.ids import new_operation_id
from provisioner.store.database import WRITER_AUTOCHECKPOINT_PAGES, Database
from provisioner.store.migrate import alembic_config, current_revision, head_revision, migrate
from provisioner.store.models import Base, components, operations, tasks
from provisioner.store.operations import SqlOperationStore
from provisioner.store.queries import Queries
from provisioner.store.submissions import NewOperation, Submissions
from provisioner.store.views import OperationView
from tests.support import DEADLINE_SECONDS, component, unit, wait_until

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


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[Database]:
    db = Database(url)
    try:
        await migrate(db)
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with migrated(database_url) as db:
        yield db


@pytest.fixture
async def asyncpg_database(postgres_url: str) -> AsyncIterator[Database]:
    """PostgreSQL through asyncpg only: the driver whose one-statement writes hold a
    connection of their own (``Database.fetch``)."""
    async with migrated(postgres_url) as db:
        yield db


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


async def test_upgrading_moves_each_stored_descriptor_out_of_its_operation_row(
    database_url: str,
) -> None:
    """Revision 0010 keeps what 0009 stored (down to 0009 and up again): the descriptor an
    operation deployed is read back from its own table, and an operation without one has
    none."""
    db = Database(database_url)
    try:
        await migrate(db)
        await db.transaction(lambda conn: command.downgrade(alembic_config(conn), "0009"))
        stored, bare = new_operation_id(), new_operation_id()

        def insert_at_0009(conn: Connection) -> None:
            for operation_id, descriptor in ((stored, '{"id": "urn:dmb:dp:old:0"}'), (bare, None)):
                conn.execute(
                    text(
                        "INSERT INTO operations (id, type, deployment_unit_id, environment, "
                        "status, remove_data, cancel_requested, fencing, created_at, "
                        "updated_at, descriptor) VALUES (:id, 'DEPLOY', :unit, 'development', "
                        "'SUCCEEDED', false, false, 1, :at, :at, :descriptor)"
                    ),
                    {
                        "id": operation_id,
                        "unit": f"urn:dmb:dp:old-{operation_id}:0",
                        "at": datetime(2026, 12, 3, tzinfo=UTC),
                        "descriptor": descriptor,
                    },
                )

        await db.transaction(insert_at_0009)
        await migrate(db)
        queries = Queries(db)
        assert await queries.document(stored) == {"id": "urn:dmb:dp:old:0"}
        assert await queries.document(bare) is None
        assert (await queries.operation(stored)) is not None
    finally:
        await db.dispose()


async def test_checkpoints_run_beside_the_writer_not_in_its_commits(sqlite_url: str) -> None:
    """A commit's pages reach the database file although no commit of the writer gets near
    its own checkpoint threshold: the checkpointer copied them; it stops with the database."""
    db = Database(sqlite_url)
    try:
        await migrate(db)
        marker = f"checkpointed-{new_operation_id()}"
        await Submissions(db).submit(replace(deploy_of("u-wal"), descriptor_json=f'"{marker}"'))
        path = Path(db.url.database or "")
        await wait_until(lambda: _contains(path, marker.encode()))
        threshold = await db.transaction(
            lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
        )
        assert threshold == WRITER_AUTOCHECKPOINT_PAGES
    finally:
        await db.dispose()
    assert not [t for t in threading.enumerate() if t.name == "sqlite-checkpointer"]


async def _contains(path: Path, marker: bytes) -> bool:
    return marker in await asyncio.to_thread(path.read_bytes)


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


async def stored_rows(database: Database, table: Any, **keys: str) -> list[dict[str, Any]]:
    async with database.read() as conn:
        found = await conn.execute(
            select(table).where(*(table.c[name] == value for name, value in keys.items()))
        )
        return [dict(row._mapping) for row in found]


async def test_a_batch_of_row_writes_stores_every_column_as_given(database: Database) -> None:
    """Tasks, components and events of two operations in one batch (on asyncpg, one statement),
    with a value in every column the engine changes: each read back as written, for the
    operation whose fence holds; nothing of the one taken over; then the values go back to
    empty (a JSON column's None is NULL again, not JSON ``null`` read as something)."""
    store = SqlOperationStore(database)
    for unit_id in ("w1", "w2"):
        new = deploy_of(unit_id)
        rows = tuple(ComponentState(step.component_id, step.is_system) for step in new.plan.steps)
        await Submissions(database).submit(replace(new, components=rows))
    now = datetime.now(UTC)
    earlier = now - timedelta(seconds=10)  # the claim's lease ends 10 s before a renewed one
    mine = await store.claim(
        owner="r1/a", replica_id="r1", limit=2, lease_seconds=LEASE, now=earlier
    )
    stolen = mine[1]
    await store.release_leases([stolen.fence])
    await store.claim(owner="r2/a", replica_id="r2", limit=1, lease_seconds=LEASE, now=now)

    def full_write(claimed: ClaimedOperation) -> StateWrite:
        task = replace(
            claimed.tasks[1],
            status=TaskStatus.SUCCEEDED,
            attempts=3,
            token="tok-ünï",
            started_at=now,
            finished_at=now + timedelta(seconds=1),
            public_info={"table": {"type": "string", "label": "T", "value": "ünï"}},
            private_info={"secret": "s"},
            logs=[{"level": "INFO", "message": "done"}],
            error={"message": "none"},
            validation={"valid": True, "errors": []},
        )
        component = replace(
            claimed.components[task.component_id],
            status=ComponentStatus.DEPLOYED,
            version="2.0.0",
            infrastructure_template_id="urn:itm:other",
            depends_on=("u", "v"),
            last_sent_operation_id=claimed.header.id,
            last_provisioned_operation_id=claimed.header.id,
            public_info={"p": 1},
            private_info={"q": [1, 2]},
            logs=[{"m": "x"}],
            refs=("user:a", "group:b"),
            last_operation_id=claimed.header.id,
            last_operation_type=OperationType.DEPLOY,
            last_task_status=TaskStatus.SUCCEEDED,
            last_finished_at=now,
        )
        event = Event(task.component_id, "RUNNING", "SUCCEEDED", now, {"attempt": 3})
        return StateWrite(
            fence=claimed.fence,
            header=claimed.header,
            tasks=[task],
            components=[component],
            events=[event],
        )

    writes = [full_write(claimed) for claimed in mine]
    assert await store.apply(writes, lease_seconds=LEASE) == {stolen.header.id}

    held = writes[0]
    [task_row] = await stored_rows(
        database, tasks, operation_id=held.header.id, component_id=held.tasks[0].component_id
    )
    assert {name: task_row[name] for name in TASK_PROGRESS} == {
        name: getattr(held.tasks[0], name) for name in TASK_PROGRESS
    }
    [component_row] = await stored_rows(
        database,
        components,
        deployment_unit_id=held.header.deployment_unit_id,
        component_id=held.components[0].component_id,
    )
    assert {name: component_row[name] for name in COMPONENT_PROGRESS} == {
        name: getattr(held.components[0], name) for name in COMPONENT_PROGRESS
    }
    [operation_row] = await stored_rows(database, operations, id=held.header.id)
    assert operation_row["lease_expires_at"] >= now + timedelta(seconds=LEASE)
    events = await Queries(database).events(held.header.id, after=0, limit=100)
    assert (events[-1].component_id, events[-1].detail) == (
        held.tasks[0].component_id,
        {"attempt": 3},
    )

    untouched = writes[1]
    [stolen_task] = await stored_rows(
        database,
        tasks,
        operation_id=untouched.header.id,
        component_id=untouched.tasks[0].component_id,
    )
    assert (stolen_task["status"], stolen_task["token"]) == (TaskStatus.WAITING, None)
    [stolen_component] = await stored_rows(
        database,
        components,
        deployment_unit_id=untouched.header.deployment_unit_id,
        component_id=untouched.components[0].component_id,
    )
    assert stolen_component["status"] is ComponentStatus.NOT_DEPLOYED
    stolen_events = await Queries(database).events(untouched.header.id, after=0, limit=100)
    assert all(event.detail != {"attempt": 3} for event in stolen_events)

    emptied = StateWrite(
        fence=held.fence,
        header=held.header,
        tasks=[replace(held.tasks[0], public_info=None, logs=None, error=None, token=None)],
        components=[replace(held.components[0], public_info=None, refs=None, version=None)],
    )
    assert await store.apply([emptied], lease_seconds=LEASE) == set()
    [task_row] = await stored_rows(
        database, tasks, operation_id=held.header.id, component_id=held.tasks[0].component_id
    )
    assert (task_row["public_info"], task_row["logs"], task_row["error"], task_row["token"]) == (
        None,
        None,
        None,
        None,
    )
    [component_row] = await stored_rows(
        database,
        components,
        deployment_unit_id=held.header.deployment_unit_id,
        component_id=held.components[0].component_id,
    )
    assert (component_row["public_info"], component_row["refs"], component_row["version"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-psycopg", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
async def test_a_batch_the_database_refuses_writes_nothing(database: Database) -> None:
    """A value the database cannot store (a token longer than its column: SQLite stores text
    of any length) fails the whole batch, the other operation's rows included (the recorder
    then applies each write alone)."""
    store = SqlOperationStore(database)
    for unit_id in ("x1", "x2"):
        await submit(database, unit_id)
    now = datetime.now(UTC)
    good, bad = await store.claim(
        owner="r1/a", replica_id="r1", limit=2, lease_seconds=LEASE, now=now
    )
    good_write = started_with_token(good, "fine")
    bad_write = started_with_token(bad, "t" * 5000)
    with pytest.raises(UnstorableValueError):
        await store.apply([good_write, bad_write], lease_seconds=LEASE)
    assert await stored_token(database, good) is None
    assert await store.apply([good_write], lease_seconds=LEASE) == set()
    assert await stored_token(database, good) == "fine"


def started_with_token(claimed: ClaimedOperation, token: str) -> StateWrite:
    """A write that starts the claimed operation's first component task with ``token``."""
    task = replace(claimed.tasks[1], status=TaskStatus.RUNNING, token=token)
    return StateWrite(fence=claimed.fence, header=claimed.header, tasks=[task])


async def stored_token(database: Database, claimed: ClaimedOperation) -> str | None:
    """The token stored for that task."""
    [task_row] = await stored_rows(
        database,
        tasks,
        operation_id=claimed.header.id,
        component_id=claimed.tasks[1].component_id,
    )
    token: str | None = task_row["token"]
    return token


async def claim_one(database: Database, unit_id: str) -> tuple[SqlOperationStore, ClaimedOperation]:
    """A store on ``database`` and the deploy of ``unit_id`` it just claimed."""
    store = SqlOperationStore(database)
    await submit(database, unit_id)
    [claimed] = await store.claim(
        owner="r1/a", replica_id="r1", limit=1, lease_seconds=LEASE, now=datetime.now(UTC)
    )
    return store, claimed


@pytest.mark.postgres
async def test_a_write_after_its_connection_was_ended_fails_once_then_gets_a_new_one(
    asyncpg_database: Database,
) -> None:
    """asyncpg's one-statement writes run on a held connection: ended by the server (as a
    restart or an administrator ends it), the next write fails as the database being away
    (the recorder retries those), at most once: the one after it runs on a new connection."""
    database = asyncpg_database
    store, claimed = await claim_one(database, "held1")
    assert await store.apply([started_with_token(claimed, "first")], lease_seconds=LEASE) == set()
    async with database.read() as conn:
        ended = await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        assert any(ended.scalars())
    second = started_with_token(claimed, "second")
    try:  # asyncpg may have seen the end already (then the write reconnects at once)
        failed = await store.apply([second], lease_seconds=LEASE)
    except DatabaseUnavailableError:
        failed = await store.apply([second], lease_seconds=LEASE)
    assert failed == set()
    assert await stored_token(database, claimed) == "second"


@pytest.mark.postgres
async def test_a_write_cancelled_half_way_leaves_the_next_one_a_working_connection(
    asyncpg_database: Database, postgres_url: str
) -> None:
    """A one-statement write cancelled while the server runs it (here: waiting for a row lock
    another session holds) takes nothing with it; the next write stores what it says."""
    database = asyncpg_database
    store, claimed = await claim_one(database, "cut1")
    assert await store.apply([started_with_token(claimed, "first")], lease_seconds=LEASE) == set()
    locked, release = asyncio.Event(), asyncio.Event()

    async def lock_then_wait() -> None:
        # A session of its own holds the operation's row locked until ``release``.
        dsn = make_url(postgres_url).set(drivername="postgresql")
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            async with conn.transaction():
                await conn.execute(
                    "SELECT id FROM operations WHERE id = $1 FOR UPDATE", claimed.header.id
                )
                locked.set()
                await release.wait()
        finally:
            await conn.close()

    holder = asyncio.create_task(lock_then_wait())
    await asyncio.wait_for(locked.wait(), DEADLINE_SECONDS)
    blocked = asyncio.create_task(
        store.apply([started_with_token(claimed, "cut")], lease_seconds=LEASE)
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(blocked), 0.5)  # it waits for the lock
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    release.set()
    await holder
    assert await store.apply([started_with_token(claimed, "after")], lease_seconds=LEASE) == set()
    assert await stored_token(database, claimed) == "after"


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
