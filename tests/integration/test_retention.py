"""Retention on SQLite and PostgreSQL: finished operations older than the limit go with their
tasks, events and delivered publications, in batches; what a release or a component still
names, what is recent or active, and what the Market Planes have not acknowledged stays; a dry
run deletes nothing and counts the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select

from provisioner import cli
from provisioner.domain.status import OperationStatus
from provisioner.service import Reads
from provisioner.service.ids import new_operation_id
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.models import (
    components,
    deliveries,
    events,
    operation_documents,
    operations,
    publications,
    published_components,
    releases,
    tasks,
)
from provisioner.store.queries import Queries
from provisioner.store.retention import TABLES, RetentionPolicy, purge

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)
POLICY = RetentionPolicy(older_than=timedelta(days=30))
ENV = "development"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


@dataclass
class History:
    """Rows written straight into the tables, shaped like the service writes them."""

    database: Database
    ids: list[str] = field(default_factory=list)

    async def operation(
        self,
        unit: str,
        *,
        status: OperationStatus = OperationStatus.SUCCEEDED,
        finished: datetime | None = OLD,
        publication: str | None = None,  # None, "DELIVERED" or "PENDING"
    ) -> str:
        """An operation with two tasks, three events and, if asked, a publication with a
        published component and a delivery in that status."""
        operation_id = new_operation_id()
        created = (finished or NOW) - timedelta(minutes=5)

        def write(conn: Connection) -> None:
            conn.execute(
                insert(operations).values(
                    id=operation_id,
                    type="DEPLOY",
                    deployment_unit_id=unit,
                    environment=ENV,
                    version="1.0.0",
                    status=status,
                    created_at=created,
                    started_at=created,
                    finished_at=finished,
                    updated_at=finished or created,
                )
            )
            conn.execute(
                insert(operation_documents).values(
                    operation_id=operation_id,
                    descriptor=json.dumps({"id": unit, "components": [{"id": f"{unit}:a"}]}),
                )
            )
            for position, component_id in enumerate((unit, f"{unit}:a")):
                conn.execute(
                    insert(tasks).values(
                        operation_id=operation_id,
                        component_id=component_id,
                        position=position,
                        action="PROVISION",
                        status="SUCCEEDED",
                        is_system=position == 0,
                        depends_on=[],
                        public_info={"endpoint": "https://example.test"},
                    )
                )
            for old, new in ((None, "PENDING"), ("PENDING", "RUNNING"), ("RUNNING", status)):
                conn.execute(
                    insert(events).values(
                        operation_id=operation_id, old_status=old, new_status=new, at=created
                    )
                )
            if publication is not None:
                publication_id = conn.execute(
                    insert(publications)
                    .values(
                        event_id=new_operation_id(),
                        event="DEPLOYED",
                        deployment_unit_id=unit,
                        environment=ENV,
                        operation_id=operation_id,
                        version="1.0.0",
                        occurred_at=created,
                    )
                    .returning(publications.c.id)
                ).scalar_one()
                conn.execute(
                    insert(published_components).values(
                        publication_id=publication_id, component_id=f"{unit}:b", public_info={}
                    )
                )
                conn.execute(
                    insert(deliveries).values(
                        publication_id=publication_id,
                        marketplace="catalog",
                        deployment_unit_id=unit,
                        environment=ENV,
                        status=publication,
                        next_attempt_at=created,
                        created_at=created,
                    )
                )

        await self.database.transaction(write)
        self.ids.append(operation_id)
        return operation_id

    async def release(
        self, unit: str, *, last: str, descriptor: str, component: dict[str, str] | None = None
    ) -> None:
        """The release of ``unit``, naming ``last`` and ``descriptor``; its component ``a``
        names the operations in ``component`` (default: ``last``)."""
        named = {
            "last_operation_id": last,
            "last_sent_operation_id": last,
            "last_provisioned_operation_id": last,
        } | (component or {})

        def write(conn: Connection) -> None:
            conn.execute(
                insert(releases).values(
                    deployment_unit_id=unit,
                    environment=ENV,
                    status="DEPLOYED",
                    version="1.0.0",
                    descriptor_operation_id=descriptor,
                    last_operation_id=last,
                    created_at=OLD,
                    updated_at=OLD,
                )
            )
            conn.execute(
                insert(components).values(
                    deployment_unit_id=unit,
                    environment=ENV,
                    component_id=f"{unit}:a",
                    is_system=False,
                    member=True,
                    status="DEPLOYED",
                    depends_on=[],
                    updated_at=OLD,
                    **named,
                )
            )

        await self.database.transaction(write)


async def existing(database: Database, ids: list[str]) -> set[str]:
    async with database.read() as conn:
        rows = await conn.execute(select(operations.c.id).where(operations.c.id.in_(ids)))
        return set(rows.scalars())


async def row_counts(database: Database) -> dict[str, int]:
    tables = {
        "operations": operations,
        "operation_documents": operation_documents,
        "tasks": tasks,
        "events": events,
        "publications": publications,
        "published_components": published_components,
        "deliveries": deliveries,
    }
    async with database.read() as conn:
        return {
            name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for name, table in tables.items()
        }


async def test_old_finished_operations_go_with_their_tasks_and_events(database: Database) -> None:
    history = History(database)
    gone = [
        await history.operation("u1", status=status)
        for status in (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED)
    ]
    last = await history.operation("u1")
    await history.release("u1", last=last, descriptor=last)
    before = await row_counts(database)

    report = await purge(database, POLICY, now=NOW)

    assert await existing(database, [*gone, last]) == {last}
    assert report.rows == {
        "operations": 3,
        "operation_documents": 3,
        "tasks": 6,
        "events": 9,
        "publications": 0,
        "published_components": 0,
        "deliveries": 0,
    }
    after = await row_counts(database)
    assert {table: before[table] - after[table] for table in TABLES} == report.rows
    events_left = await Queries(database).events(last, after=0, limit=100)
    assert len(events_left) == 3


async def test_what_a_release_or_a_component_names_stays_and_reads_still_work(
    database: Database,
) -> None:
    history = History(database)
    provisioned_with = await history.operation("u1")
    described_by = await history.operation("u1")
    sent = await history.operation("u1")
    unnamed = await history.operation("u1")
    last = await history.operation("u1", status=OperationStatus.FAILED)
    await history.release(
        "u1",
        last=last,
        descriptor=described_by,
        component={
            "last_provisioned_operation_id": provisioned_with,
            "last_sent_operation_id": sent,
        },
    )

    await purge(database, POLICY, now=NOW)

    kept = {provisioned_with, described_by, sent, last}
    assert await existing(database, [*kept, unnamed]) == kept
    reads = Reads(Queries(database))
    release = await reads.release("u1", ENV)
    assert release.last_operation_id == last
    assert await reads.deployed_descriptor(release) is not None
    assert await reads.document(provisioned_with) is not None
    assert (await reads.operation(last)).tasks


async def test_recent_and_active_operations_stay(database: Database) -> None:
    history = History(database)
    recent = await history.operation("u1", finished=RECENT)
    last = await history.operation("u1")
    await history.release("u1", last=last, descriptor=last)
    # A release with an operation running: none of its operations goes, however old.
    old_of_busy = await history.operation("u2")
    busy_last = await history.operation("u2")
    await history.release("u2", last=busy_last, descriptor=busy_last)
    running = await history.operation("u2", status=OperationStatus.RUNNING, finished=None)
    pending = await history.operation("u3", status=OperationStatus.PENDING, finished=None)

    report = await purge(database, POLICY, now=NOW)

    assert report.operations == 0
    assert await existing(database, history.ids) == set(history.ids)
    assert {recent, old_of_busy, running, pending} <= set(history.ids)


async def test_an_unacknowledged_publication_keeps_its_operation(database: Database) -> None:
    history = History(database)
    undelivered = await history.operation("u1", publication="PENDING")
    delivered = await history.operation("u1", publication="DELIVERED")
    last = await history.operation("u1")
    await history.release("u1", last=last, descriptor=last)

    report = await purge(database, POLICY, now=NOW)

    assert await existing(database, [undelivered, delivered, last]) == {undelivered, last}
    assert (report.rows["publications"], report.rows["published_components"]) == (1, 1)
    assert report.rows["deliveries"] == 1
    page = await Queries(database).publications("u1", ENV, limit=10, cursor=None)
    assert [item.operation_id for item in page.items] == [undelivered]
    assert [delivery.status for delivery in page.items[0].deliveries] == ["PENDING"]


async def test_a_dry_run_deletes_nothing_and_counts_what_the_purge_then_removes(
    database: Database,
) -> None:
    history = History(database)
    for _ in range(3):
        await history.operation("u1", publication="DELIVERED")
    await history.operation("u1", finished=RECENT)
    last = await history.operation("u1")
    await history.release("u1", last=last, descriptor=last)
    before = await row_counts(database)

    small = RetentionPolicy(timedelta(days=30), batch_size=2)
    dry = await purge(database, small, now=NOW, dry_run=True)

    assert await row_counts(database) == before
    assert dry.dry_run
    assert dry.operations == 3
    done = await purge(database, small, now=NOW)
    assert (done.rows, done.batches) == (dry.rows, dry.batches)


async def test_small_batches_purge_everything_over_several_transactions(
    database: Database,
) -> None:
    history = History(database)
    for index in range(7):
        await history.operation(f"u{index % 2}")
    lasts = {}
    for unit in ("u0", "u1"):
        lasts[unit] = await history.operation(unit)
        await history.release(unit, last=lasts[unit], descriptor=lasts[unit])

    report = await purge(database, RetentionPolicy(timedelta(days=30), batch_size=2), now=NOW)

    assert report.operations == 7
    assert report.batches == 4
    assert await existing(database, history.ids) == set(lasts.values())
    again = await purge(database, POLICY, now=NOW)
    assert again.operations == 0


async def test_the_purge_command_reports_per_table_and_dry_run_keeps_the_rows(
    database: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    history = History(database)
    old = await history.operation("u1")
    last = await history.operation("u1")
    await history.release("u1", last=last, descriptor=last)
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", database_url)

    assert await asyncio.to_thread(cli.main, ["purge", "--dry-run", "--older-than", "30"]) == 0
    dry: Any = capsys.readouterr().out
    assert "would purge" in dry
    assert _count(dry, "operations") == 1
    assert _count(dry, "events") == 3
    assert await existing(database, [old]) == {old}

    assert await asyncio.to_thread(cli.main, ["purge", "--older-than", "30"]) == 0
    assert _count(capsys.readouterr().out, "tasks") == 2
    assert await existing(database, [old, last]) == {last}


def test_the_purge_command_needs_an_age(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PROVISIONER_RETENTION_DAYS", raising=False)
    assert cli.main(["purge", "--dry-run"]) == 2
    assert "--older-than" in capsys.readouterr().err


def _count(output: str, table: str) -> int:
    for line in output.splitlines():
        name, _, value = line.partition(" ")
        if name == table:
            return int(value.strip().replace(",", ""))
    raise AssertionError(f"no line for {table} in {output!r}")


async def test_purges_at_the_same_time_share_the_work(
    database: Database, database_url: str
) -> None:
    """Two replicas purging at once: each operation goes once, neither fails."""
    history = History(database)
    for index in range(12):
        await history.operation(f"u{index % 3}")
    lasts = []
    for unit in ("u0", "u1", "u2"):
        lasts.append(await history.operation(unit))
        await history.release(unit, last=lasts[-1], descriptor=lasts[-1])
    other = Database(database_url)
    small = RetentionPolicy(timedelta(days=30), batch_size=2)
    try:
        reports = await asyncio.gather(
            purge(database, small, now=NOW), purge(other, small, now=NOW)
        )
    finally:
        await other.dispose()

    assert sum(report.operations for report in reports) == 12
    assert sum(report.rows["events"] for report in reports) == 36
    assert await existing(database, history.ids) == set(lasts)
