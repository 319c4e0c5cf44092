"""Retention: finished operations older than a limit, purged with what refers to them.

``purge`` removes operations that ended (SUCCEEDED, FAILED, CANCELLED) before the cutoff,
with their tasks, events, stored descriptors and Market Plane publications (and those
publications' published components and deliveries), in batches of ``batch_size`` operations,
one short transaction per batch, pausing between batches so that the service's own writes
interleave.

Never purged:

- an operation a release or a component row still names: the release's last operation and its
  descriptor's operation (release reads, dry runs and undeploys read that descriptor), a
  component's last operation, and the operations whose descriptor it was last sent and last
  provisioned with (an unprovision sends that descriptor);
- any operation of a release that has an operation pending or running (what that operation
  claimed may name older ones);
- an operation with a publication a Market Plane has not acknowledged (the outbox keeps every
  undelivered event, and the in-order rule looks at the earlier ones).

A batch takes its candidates in id order (time order: ids are UUIDv7) past the previous batch's
last, so a run reads the table once whatever it keeps. Replicas may purge at the same time:
on PostgreSQL the candidates are locked ``FOR UPDATE SKIP LOCKED``, so two purges take disjoint
batches; SQLite serialises writes. A dry run reads the same batches and counts instead of
deleting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection, Select, delete, func, select

from provisioner.background import cancel_and_wait, every
from provisioner.domain.status import ACTIVE_OPERATION_STATUSES, DeliveryStatus, OperationStatus
from provisioner.store.database import Database
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

if TYPE_CHECKING:
    from provisioner.settings import Settings

log = structlog.get_logger(__name__)

FINISHED = (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.CANCELLED)
# The columns that name an operation a release still needs (each indexed for this check).
NAMING = (
    releases.c.last_operation_id,
    releases.c.descriptor_operation_id,
    components.c.last_operation_id,
    components.c.last_sent_operation_id,
    components.c.last_provisioned_operation_id,
)
# What a purge removes, in the order it deletes (what refers first).
TABLES = (
    "deliveries",
    "published_components",
    "publications",
    "events",
    "tasks",
    "operation_documents",
    "operations",
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Operations that ended more than ``older_than`` ago go, ``batch_size`` at a time."""

    older_than: timedelta
    batch_size: int = 500
    pause_seconds: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, *, days: float) -> RetentionPolicy:
        return cls(
            older_than=timedelta(days=days),
            batch_size=settings.retention_batch_size,
            pause_seconds=settings.retention_pause_seconds,
        )


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed (a dry run: would remove), row counts per table."""

    cutoff: datetime
    dry_run: bool
    batches: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))

    @property
    def operations(self) -> int:
        return self.rows["operations"]

    def lines(self) -> list[str]:
        """The report as text: the cutoff, then one line per table."""
        verb = "would purge" if self.dry_run else "purged"
        width = max(len(table) for table in TABLES)
        counts = [f"{table.ljust(width)}  {self.rows[table]:>10,}" for table in TABLES[::-1]]
        return [
            f"{verb} what ended before {self.cutoff.isoformat(timespec='seconds')}:",
            *counts,
        ]


async def purge(
    database: Database, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False
) -> PurgeReport:
    """Purge (or, ``dry_run``, count) what ``policy`` lets go as of ``now``."""
    report = PurgeReport(cutoff=now - policy.older_than, dry_run=dry_run)
    after: str | None = None
    while True:
        batch = _Batch(report.cutoff, after, policy.batch_size, dry_run=dry_run)
        if dry_run:
            async with database.read() as conn:
                await conn.run_sync(batch.run)
        else:
            await database.transaction(batch.run)
        if batch.rows.get("operations"):
            report = _added(report, batch.rows)
        if batch.last_candidate is None or batch.exhausted:
            return report
        after = batch.last_candidate
        if policy.pause_seconds:
            await asyncio.sleep(policy.pause_seconds)


def _added(report: PurgeReport, rows: dict[str, int]) -> PurgeReport:
    total = {table: report.rows[table] + rows.get(table, 0) for table in TABLES}
    return PurgeReport(report.cutoff, report.dry_run, report.batches + 1, total)


@dataclass(slots=True)
class _Batch:
    """One batch: the next operations that may go, and their rows."""

    cutoff: datetime
    after: str | None
    size: int
    dry_run: bool
    last_candidate: str | None = None
    exhausted: bool = False
    rows: dict[str, int] = field(default_factory=dict)

    def run(self, conn: Connection) -> None:
        ids = list(conn.execute(self._candidates()).scalars())
        self.exhausted = len(ids) < self.size
        if ids:
            self.last_candidate = ids[-1]
            self.rows = _remove(conn, ids, dry_run=self.dry_run)

    def _candidates(self) -> Select[Any]:
        o = operations.c
        active = operations.alias("active")
        query = (
            select(o.id)
            .where(o.status.in_(FINISHED), o.finished_at < self.cutoff)
            .where(
                ~select(active.c.id)
                .where(
                    active.c.deployment_unit_id == o.deployment_unit_id,
                    active.c.environment == o.environment,
                    active.c.status.in_(ACTIVE_OPERATION_STATUSES),
                )
                .exists(),
                o.id.not_in(_undelivered_operations()),
                *(~select(column).where(column == o.id).exists() for column in NAMING),
            )
            .order_by(o.id)
            .limit(self.size)
        )
        if self.after is not None:
            query = query.where(o.id > self.after)
        if not self.dry_run:
            query = query.with_for_update(of=operations, skip_locked=True)
        return query


def _undelivered_operations() -> Select[Any]:
    """Operations with a publication some Market Plane has not acknowledged (few: the
    partial index of pending deliveries finds them)."""
    return (
        select(publications.c.operation_id)
        .join(deliveries, deliveries.c.publication_id == publications.c.id)
        .where(deliveries.c.status == DeliveryStatus.PENDING)
    )


def _remove(conn: Connection, ids: list[str], *, dry_run: bool) -> dict[str, int]:
    """Delete (or count) the rows of operations ``ids`` and of what refers to them."""
    publication_ids = list(
        conn.execute(select(publications.c.id).where(publications.c.operation_id.in_(ids)))
        .scalars()
        .all()
    )
    where: dict[str, Callable[[], Any]] = {
        "deliveries": lambda: deliveries.c.publication_id.in_(publication_ids),
        "published_components": lambda: published_components.c.publication_id.in_(publication_ids),
        "publications": lambda: publications.c.id.in_(publication_ids),
        "events": lambda: events.c.operation_id.in_(ids),
        "tasks": lambda: tasks.c.operation_id.in_(ids),
        "operation_documents": lambda: operation_documents.c.operation_id.in_(ids),
        "operations": lambda: operations.c.id.in_(ids),
    }
    tables = {
        "deliveries": deliveries,
        "published_components": published_components,
        "publications": publications,
        "events": events,
        "tasks": tasks,
        "operation_documents": operation_documents,
        "operations": operations,
    }
    rows: dict[str, int] = {}
    for name in TABLES:
        condition = where[name]()
        if dry_run:
            counted = select(func.count()).select_from(tables[name]).where(condition)
            rows[name] = int(conn.execute(counted).scalar_one())
        else:
            rows[name] = conn.execute(delete(tables[name]).where(condition)).rowcount
    return rows


class RetentionTask:
    """Purges every ``interval_seconds`` in the service (each replica may run one: purges at
    the same time take disjoint batches)."""

    def __init__(
        self,
        database: Database,
        policy: RetentionPolicy,
        *,
        interval_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._database = database
        self._policy = policy
        self._interval = interval_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # completed purges, for tests and logs

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            every(self._interval, self._purge, name="retention"), name="retention"
        )

    async def _purge(self) -> None:
        report = await purge(self._database, self._policy, now=self._clock())
        self.runs += 1
        if report.operations:
            log.info("retention_purged", cutoff=report.cutoff.isoformat(), **report.rows)
