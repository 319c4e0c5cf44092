"""The engine's durable state in SQL: claiming operations, applying fenced writes, leases."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Row,
    and_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
    update,
)

from provisioner.domain.publication import PublicationEvent, acl_detail, event_after
from provisioner.domain.status import (
    UNFINISHED_TASK_STATUSES,
    ComponentStatus,
    Interruption,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    ReleaseVerdict,
    TaskStatus,
    changes_release,
    component_after,
    records_provisioning,
    release_verdict,
)
from provisioner.engine.ports import (
    COMPONENT_PROGRESS,
    TASK_PROGRESS,
    ClaimedOperation,
    ComponentState,
    Event,
    Fence,
    OperationHeader,
    StateWrite,
    TaskState,
    descriptor_source,
)
from provisioner.offload import offload
from provisioner.store.database import Database
from provisioner.store.models import (
    components,
    events,
    operation_documents,
    operations,
    releases,
    tasks,
)
from provisioner.store.notifications import CHANNEL, EVENT_COLUMNS, insert_events, notifying
from provisioner.store.outbox import NewPublication, publication_state, record_publication
from provisioner.store.records import (
    Prepared,
    Unnested,
    field_names,
    record,
    records,
    update_by_key,
    values,
)

_TASK_KEY = {"operation_id": "k_operation", "component_id": "k_component"}
_COMPONENT_KEY = {
    "deployment_unit_id": "k_unit",
    "environment": "k_environment",
    "component_id": "k_component",
}
_UPDATE_TASK = Prepared(update_by_key(tasks, _TASK_KEY, TASK_PROGRESS))
# What a state write sets in a component's row: its progress and when it changed.
_COMPONENT_WRITTEN = (*COMPONENT_PROGRESS, "updated_at")
_UPDATE_COMPONENT = Prepared(update_by_key(components, _COMPONENT_KEY, _COMPONENT_WRITTEN))
_SET_MEMBER = Prepared(update_by_key(components, _COMPONENT_KEY, ("member",)))
_STAMP_COMPONENT = update_by_key(
    components,
    _COMPONENT_KEY,
    (
        "status",
        "last_operation_id",
        "last_operation_type",
        "last_task_status",
        "last_finished_at",
        "updated_at",
    ),
)

_LEASE = bindparam("lease", type_=operations.c.lease_expires_at.type)
# Renew one operation's lease (keep it when no lease is given) if its fence still holds.
_RENEW_ONE_BASE = (
    update(operations)
    .where(operations.c.id == bindparam("k_id"), operations.c.fencing == bindparam("k_fence"))
    .values(
        updated_at=bindparam("now", type_=operations.c.updated_at.type),
        lease_expires_at=func.coalesce(_LEASE, operations.c.lease_expires_at),
    )
)
_RENEW_ONE = Prepared(_RENEW_ONE_BASE.returning(operations.c.id))
# The same for a state write on PostgreSQL: it also notifies the operation's event readers.
_RENEW_ONE_NOTIFYING = Prepared(
    _RENEW_ONE_BASE.returning(operations.c.id, notifying(operations.c.id))
)
_EVENT_FIELDS = field_names(Event)


def event_values(operation_id: str, event: Event, principal: str | None) -> dict[str, Any]:
    """An event row; ``principal`` is who it happened on behalf of."""
    return {"operation_id": operation_id, "principal": principal, **values(event, _EVENT_FIELDS)}


def release_key(table: Any, header: OperationHeader) -> tuple[Any, Any]:
    """The WHERE clause selecting the rows of ``header``'s release in ``table``."""
    return (
        table.c.deployment_unit_id == header.deployment_unit_id,
        table.c.environment == header.environment,
    )


class SqlOperationStore:
    """``OperationStore`` on SQLite or PostgreSQL.

    ``marketplaces`` names the configured Market Planes: an operation that succeeds publishes
    its event to each of them, in the transaction that records its end.
    """

    def __init__(self, database: Database, *, marketplaces: Sequence[str] = ()) -> None:
        self._db = database
        self._marketplaces = tuple(marketplaces)
        # Writes of rows only are one statement on asyncpg (``_WriteAtOnce``, written in its
        # numbered parameters); SQLite and psycopg run them in a transaction.
        self._at_once = database.url.get_driver_name() == "asyncpg"

    # --- claiming ---------------------------------------------------------------------------

    async def claim(
        self,
        *,
        owner: str,
        replica_id: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        running: Sequence[str] = (),
    ) -> list[ClaimedOperation]:
        def take_and_read(conn: Connection) -> _Claimed | None:
            taken = self._take(
                conn,
                owner=owner,
                replica_id=replica_id,
                limit=limit,
                lease_seconds=lease_seconds,
                now=now,
                running=running,
            )
            return _read_claimed(conn, taken) if taken else None

        claimed = await self._db.transaction(take_and_read)
        if claimed is None:
            return []
        documents = {
            row.id: (await decode_document(row.descriptor), len(row.descriptor))
            for row in claimed.texts
        }
        return [claimed.parts.claimed(op, documents) for op in claimed.ops]

    def _take(
        self,
        conn: Connection,
        *,
        owner: str,
        replica_id: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        running: Sequence[str],
    ) -> list[str]:
        ops = operations.c
        claimable = or_(
            ops.status == OperationStatus.PENDING,
            and_(
                ops.status == OperationStatus.RUNNING,
                or_(
                    ops.owner.is_(None),
                    ops.lease_expires_at < now,
                    # A previous process of this replica: it is gone, since we run now.
                    and_(ops.replica_id == replica_id, ops.owner != owner),
                ),
            ),
        )
        query = select(ops.id, ops.status, ops.fencing, ops.started_at, ops.owner, ops.requested_by)
        query = query.where(claimable).order_by(ops.id).limit(limit)
        if running:
            query = query.where(ops.id.not_in(list(running)))
        if not self._db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return []
        conn.execute(
            update(operations)
            .where(ops.id.in_([row.id for row in rows]))
            .values(
                owner=owner,
                replica_id=replica_id,
                fencing=ops.fencing + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                status=OperationStatus.RUNNING,
                started_at=func.coalesce(ops.started_at, now),
                updated_at=now,
            )
        )
        claimed_events = []
        for row in rows:
            detail: dict[str, Any] = {"owner": owner, "fence": row.fencing + 1}
            if row.status is OperationStatus.RUNNING:
                detail["resumedFrom"] = row.owner
            claimed_events.append(
                event_values(
                    row.id,
                    Event(None, row.status, OperationStatus.RUNNING, now, detail),
                    row.requested_by,
                )
            )
        insert_events(conn, claimed_events)
        return [row.id for row in rows]

    # --- fenced writes ----------------------------------------------------------------------

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        if self._at_once and _rows_only(writes):
            return await _WRITE_AT_ONCE.apply(self._db, writes, lease_seconds, datetime.now(UTC))
        return await self._db.transaction(
            lambda conn: self._apply(conn, writes, lease_seconds, datetime.now(UTC)),
            inline=_small(writes),
        )

    def _apply(
        self, conn: Connection, writes: Sequence[StateWrite], lease_seconds: float, now: datetime
    ) -> set[str]:
        failed = self._check_fences(
            conn, [write.fence for write in writes], lease_seconds, now, notify=True
        )
        live = [write for write in writes if write.fence.operation_id not in failed]
        self._write_rows(conn, live, now)
        for write in live:
            if write.members is not None:
                _record_members(conn, write.header, write.members)
            if write.abandon is not None:
                _abandon(conn, write.header, write.abandon, now)
            elif write.operation is not None:
                self._write_operation(conn, write, now)
        return failed

    def _check_fences(
        self,
        conn: Connection,
        fences: Sequence[Fence],
        lease_seconds: float | None,
        now: datetime,
        *,
        notify: bool = False,
    ) -> set[str]:
        """Renew the lease of each operation whose fence holds; return those whose does not.
        ``notify``: on PostgreSQL, also notify the event readers of those that hold (the
        events written after this in the transaction then notify nobody again).

        On PostgreSQL the UPDATE also locks the row until commit, so a concurrent takeover
        (which increments the fence) waits for this transaction and then wins.
        """
        wanted = {(fence.operation_id, fence.token) for fence in fences}
        wanted_ids = {operation_id for operation_id, _ in wanted}
        lease = None if lease_seconds is None else now + timedelta(seconds=lease_seconds)
        notify = notify and not self._db.is_sqlite
        if len(wanted) == 1:  # the usual case, with a statement prepared once
            ((operation_id, token),) = wanted
            statement = _RENEW_ONE_NOTIFYING if notify else _RENEW_ONE
            params = {"k_id": operation_id, "k_fence": token, "now": now, "lease": lease}
            return wanted_ids - {row[0] for row in statement.execute(conn, [params])}
        returned = [operations.c.id, *([notifying(operations.c.id)] if notify else [])]
        held = conn.execute(
            update(operations)
            .where(tuple_(operations.c.id, operations.c.fencing).in_(sorted(wanted)))
            .values(
                updated_at=now,
                lease_expires_at=func.coalesce(bindparam("lease"), operations.c.lease_expires_at),
            )
            .returning(*returned),
            {"lease": lease},
        ).scalars()
        return wanted_ids - set(held)

    def _write_rows(self, conn: Connection, writes: Sequence[StateWrite], now: datetime) -> None:
        rows = _Rows.of(writes, now)
        if rows.tasks:
            _UPDATE_TASK.execute(conn, rows.tasks)
        if rows.components:
            _UPDATE_COMPONENT.execute(conn, rows.components)
        if rows.events:
            insert_events(conn, rows.events, notify=False)  # the fence check notified

    def _write_operation(self, conn: Connection, write: StateWrite, now: datetime) -> None:
        assert write.operation is not None
        header, outcome = write.header, write.operation
        terminal = not outcome.status.is_active
        changes: dict[str, Any] = values(outcome, ("status", "started_at", "finished_at", "error"))
        changes["updated_at"] = now
        if terminal:
            changes.update(owner=None, lease_expires_at=None)
        conn.execute(update(operations).where(operations.c.id == header.id).values(changes))
        if terminal:
            self._publish(conn, header, outcome.status, now)
            settle_release(conn, header, outcome.status, now)

    def _publish(
        self, conn: Connection, header: OperationHeader, outcome: OperationStatus, now: datetime
    ) -> None:
        """The outbox: the event of a successful operation commits with its end."""
        event = event_after(header.type, outcome)
        if event is None or not self._marketplaces:
            return
        publication = NewPublication(
            event=event,
            deployment_unit_id=header.deployment_unit_id,
            environment=header.environment,
            operation_id=header.id,
            version=header.version,
            occurred_at=now,
            detail=_acl_detail(conn, header) if event is PublicationEvent.ACL_UPDATED else None,
        )
        record_publication(conn, publication, self._marketplaces)

    # --- leases -----------------------------------------------------------------------------

    async def renew_leases(
        self, fences: Sequence[Fence], *, lease_seconds: float | None, now: datetime
    ) -> tuple[set[str], set[str]]:
        ids = [fence.operation_id for fence in fences]
        if lease_seconds is None:
            async with self._db.read() as conn:
                rows = (
                    await conn.execute(
                        select(
                            operations.c.id, operations.c.fencing, operations.c.cancel_requested
                        ).where(operations.c.id.in_(ids))
                    )
                ).all()
            current = {row.id: row.fencing for row in rows}
            lost = {
                fence.operation_id
                for fence in fences
                if current.get(fence.operation_id) != fence.token
            }
            return lost, {row.id for row in rows if row.cancel_requested} - lost

        def renew(conn: Connection) -> tuple[set[str], set[str]]:
            lost = self._check_fences(conn, fences, lease_seconds, now)
            cancels = conn.execute(
                select(operations.c.id).where(
                    operations.c.id.in_(ids), operations.c.cancel_requested
                )
            ).scalars()
            return lost, set(cancels) - lost

        return await self._db.transaction(renew)

    async def release_leases(self, fences: Sequence[Fence]) -> None:
        if not fences:
            return
        statement = (
            update(operations)
            .where(
                operations.c.id == bindparam("k_id"),
                operations.c.fencing == bindparam("k_fence"),
            )
            .values(owner=None, lease_expires_at=None)
        )
        params = [{"k_id": fence.operation_id, "k_fence": fence.token} for fence in fences]
        await self._db.transaction(lambda conn: conn.execute(statement, params))


@dataclass(frozen=True, slots=True)
class _Claimed:
    """What a claim read: the operations taken, their rows sorted out, the descriptor texts."""

    ops: Sequence[Row[Any]]
    parts: _Parts
    texts: Sequence[Row[Any, Any]]


def _read_claimed(conn: Connection, taken: Sequence[str]) -> _Claimed:
    """Everything needed to run the operations just taken, in five queries for all of them,
    in the claim's own transaction: no other round trip, and what is read is what was taken."""
    ops = conn.execute(
        select(operations)
        .where(operations.c.id.in_(list(taken)))
        .order_by(operations.c.id)  # submission order, as claimed
    ).all()
    releases_of = list({(op.deployment_unit_id, op.environment) for op in ops})
    task_rows = conn.execute(
        select(tasks)
        .where(tasks.c.operation_id.in_([op.id for op in ops]))
        .order_by(tasks.c.operation_id, tasks.c.position)
    ).all()
    release_key = tuple_(components.c.deployment_unit_id, components.c.environment)
    component_rows = conn.execute(select(components).where(release_key.in_(releases_of))).all()
    release_rows = conn.execute(
        select(
            releases.c.deployment_unit_id,
            releases.c.environment,
            releases.c.descriptor_operation_id,
        ).where(tuple_(releases.c.deployment_unit_id, releases.c.environment).in_(releases_of))
    ).all()
    parts = _Parts(ops, task_rows, component_rows, release_rows)
    documents = operation_documents.c
    texts = conn.execute(
        select(documents.operation_id.label("id"), documents.descriptor).where(
            documents.operation_id.in_(parts.documents_needed())
        )
    ).all()
    return _Claimed(ops, parts, texts)


class _Parts:
    """The rows of a claim batch, sorted out per operation."""

    def __init__(
        self,
        ops: Sequence[Row[Any]],
        task_rows: Sequence[Row[Any]],
        component_rows: Sequence[Row[Any]],
        release_rows: Sequence[Row[Any, Any, Any]],
    ) -> None:
        self.headers = {op.id: record(OperationHeader, op) for op in ops}
        self.tasks: dict[str, list[TaskState]] = {op.id: [] for op in ops}
        for row, task in zip(task_rows, records(TaskState, task_rows), strict=True):
            self.tasks[row.operation_id].append(task)
        self.states: dict[tuple[str, str], dict[str, ComponentState]] = {}
        for row, state in zip(component_rows, records(ComponentState, component_rows), strict=True):
            key = (row.deployment_unit_id, row.environment)
            self.states.setdefault(key, {})[state.component_id] = state
        self.release_descriptor = {
            (row.deployment_unit_id, row.environment): row.descriptor_operation_id
            for row in release_rows
        }
        self.needed = {op.id: self._needed(op) for op in ops}

    def _needed(self, op: Row[Any]) -> set[str]:
        """The descriptors the operation's tasks send, and the release's last one."""
        header = self.headers[op.id]
        key = (op.deployment_unit_id, op.environment)
        states = self.states.get(key, {})
        needed = {self.release_descriptor.get(key)}
        needed.update(
            descriptor_source(header, states.get(task.component_id)) for task in self.tasks[op.id]
        )
        return {op_id for op_id in needed if op_id}

    def documents_needed(self) -> list[str]:
        return sorted(set().union(*self.needed.values()))

    def claimed(
        self, op: Row[Any], documents: Mapping[str, tuple[Mapping[str, Any], int]]
    ) -> ClaimedOperation:
        key = (op.deployment_unit_id, op.environment)
        mine = {op_id: documents[op_id] for op_id in self.needed[op.id] if op_id in documents}
        return ClaimedOperation(
            header=self.headers[op.id],
            fence=Fence(op.id, op.fencing),
            status=op.status,
            started_at=op.started_at,
            cancel_requested=op.cancel_requested,
            tasks=self.tasks[op.id],
            components=dict(self.states.get(key, {})),
            documents={op_id: document for op_id, (document, _) in mine.items()},
            release_descriptor_operation_id=self.release_descriptor.get(key),
            documents_size=sum(size for _, size in mine.values()),
        )


def _acl_detail(conn: Connection, header: OperationHeader) -> dict[str, Any]:
    """An ACL update's event: its one component and the refs it granted."""
    component_id = conn.execute(
        select(tasks.c.component_id).where(tasks.c.operation_id == header.id).limit(1)
    ).scalar_one()
    return acl_detail(component_id, header.refs or ())


def _record_members(conn: Connection, header: OperationHeader, members: Sequence[str]) -> None:
    """From now on the release is made of these (and of whatever is still deployed)."""
    conn.execute(update(components).where(*release_key(components, header)).values(member=False))
    _SET_MEMBER.execute(
        conn,
        [
            {
                "k_unit": header.deployment_unit_id,
                "k_environment": header.environment,
                "k_component": component_id,
                "member": True,
            }
            for component_id in members
        ],
    )


def _abandon(conn: Connection, header: OperationHeader, message: str, now: datetime) -> None:
    """End an operation FAILED after an internal error, writing statuses only."""
    outcome = Interruption.CRASH.task_status
    unfinished = conn.execute(
        select(
            tasks.c.component_id, tasks.c.action, tasks.c.status, components.c.status.label("was")
        )
        .join(
            components,
            and_(
                components.c.component_id == tasks.c.component_id,
                *release_key(components, header),
            ),
        )
        .where(tasks.c.operation_id == header.id, tasks.c.status.in_(UNFINISHED_TASK_STATUSES))
    ).all()
    error = {"message": message}
    conn.execute(
        update(tasks)
        .where(tasks.c.operation_id == header.id, tasks.c.status.in_(UNFINISHED_TASK_STATUSES))
        .values(status=outcome, finished_at=now, error=error)
    )
    stamped = [
        {
            "k_unit": header.deployment_unit_id,
            "k_environment": header.environment,
            "k_component": row.component_id,
            # A RUNNING task may have called its adapter: nobody knows what is deployed.
            "status": component_after(
                row.was, row.action, outcome, called=row.status is TaskStatus.RUNNING
            ),
            "last_operation_id": header.id,
            "last_operation_type": header.type,
            "last_task_status": outcome,
            "last_finished_at": now,
            "updated_at": now,
        }
        for row in unfinished
        if records_provisioning(row.action)  # an ACL update leaves its component as it was
    ]
    if stamped:
        conn.execute(_STAMP_COMPONENT, stamped)
    conn.execute(
        update(operations)
        .where(operations.c.id == header.id)
        .values(
            status=OperationStatus.FAILED,
            finished_at=now,
            error=message,
            owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    insert_events(
        conn,
        [
            *(
                event_values(
                    header.id,
                    Event(row.component_id, row.status, outcome, now),
                    header.requested_by,
                )
                for row in unfinished
            ),
            event_values(
                header.id,
                Event(None, OperationStatus.RUNNING, OperationStatus.FAILED, now, error),
                header.requested_by,
            ),
        ],
    )
    settle_release(conn, header, OperationStatus.FAILED, now)


# A batch of at most this many rows and members, and nothing else, is a small write
# (``_small``): a unit of up to 63 components records its members inline.
_SMALL_WRITE_ROWS = 12
_SMALL_WRITE_MEMBERS = 64


def _ends_nothing(write: StateWrite) -> bool:
    """The write neither ends nor abandons its operation."""
    return write.abandon is None and write.operation is None


def _rows_only(writes: Sequence[StateWrite]) -> bool:
    """Task, component and event rows and nothing more (no members, no operation end)."""
    return all(write.members is None and _ends_nothing(write) for write in writes)


def _small(writes: Sequence[StateWrite]) -> bool:
    """A few rows and at most a small unit's members: what one step of a chain writes (6 rows,
    and the members with its first start), run without a thread hop on SQLite
    (``Database.transaction``'s ``inline``)."""
    rows = sum(len(write.tasks) + len(write.components) + len(write.events) for write in writes)
    members = sum(len(write.members or ()) for write in writes)
    return (
        rows <= _SMALL_WRITE_ROWS
        and members <= _SMALL_WRITE_MEMBERS
        and all(_ends_nothing(write) for write in writes)
    )


@dataclass(slots=True)
class _Rows:
    """The row parameters of a batch of writes, for the statements that write them. Keyed,
    so that a batch holding two states of one row writes the later one only."""

    tasks: list[dict[str, Any]]
    components: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @classmethod
    def of(cls, writes: Sequence[StateWrite], now: datetime) -> _Rows:
        task_params: dict[tuple[str, str], dict[str, Any]] = {}
        component_params: dict[tuple[str, str, str], dict[str, Any]] = {}
        event_params: list[dict[str, Any]] = []
        for write in writes:
            header = write.header
            for task in write.tasks:
                params = values(task, TASK_PROGRESS)
                params.update(k_operation=header.id, k_component=task.component_id)
                task_params[(header.id, task.component_id)] = params
            for component in write.components:
                params = values(component, COMPONENT_PROGRESS)
                params.update(
                    k_operation=header.id,
                    k_unit=header.deployment_unit_id,
                    k_environment=header.environment,
                    k_component=component.component_id,
                    updated_at=now,
                )
                key = (header.deployment_unit_id, header.environment, component.component_id)
                component_params[key] = params
            event_params.extend(
                event_values(header.id, event, header.requested_by) for event in write.events
            )
        return cls(list(task_params.values()), list(component_params.values()), event_params)


class _WriteAtOnce:
    """PostgreSQL (asyncpg): a batch of writes that change rows only, as one statement in
    autocommit.

    In a transaction the same batch costs six round trips: BEGIN, the fence check, the tasks,
    the components, the events, COMMIT. Here the rows of each table travel as one array per
    column (``Unnested``) and data-modifying ``WITH`` queries write them: the fence check
    renews the lease of (and notifies, see ``notifying``) the operations whose fence holds,
    and every other part writes only the rows of those operations. One statement is atomic:
    an operation whose fence fails has nothing written, as in the transaction, and its row
    lock makes a concurrent takeover wait for the statement's end. The statement is built
    once per dialect, from the column lists the transaction's statements are built from.
    """

    def __init__(self) -> None:
        self._built: dict[tuple[str, str], _AtOnce] = {}

    async def apply(
        self, db: Database, writes: Sequence[StateWrite], lease_seconds: float, now: datetime
    ) -> set[str]:
        """Apply ``writes`` (``Database.fetch``); return the operations whose fence failed."""
        dialect = db.dialect
        key = (dialect.name, dialect.driver)
        built = self._built.get(key) or self._built.setdefault(key, _AtOnce.build(dialect))
        rows = _Rows.of(writes, now)
        wanted = sorted({(write.fence.operation_id, write.fence.token) for write in writes})
        fences = [{"k_id": operation_id, "k_fence": token} for operation_id, token in wanted]
        params = [built.stamp(now), built.stamp(now + timedelta(seconds=lease_seconds))]
        for part, part_rows in zip(
            built.parts, (fences, rows.tasks, rows.components, rows.events), strict=True
        ):
            params += part.arrays(part_rows)
        held = {row[0] for row in await db.fetch(built.sql, params)}
        return {operation_id for operation_id, _ in wanted} - held


@dataclass(frozen=True, slots=True)
class _AtOnce:
    """``_WriteAtOnce``'s statement for one dialect: its SQL, the arrays of its four parts
    (fences, tasks, components, events) and how its two timestamps are stored."""

    sql: str
    parts: tuple[Unnested, ...]
    stamp: Callable[[datetime], Any]

    @classmethod
    def build(cls, dialect: Dialect) -> _AtOnce:
        quote = dialect.identifier_preparer.quote
        parts = (
            Unnested.of(dialect, {"k_id": operations.c.id, "k_fence": operations.c.fencing}),
            Unnested.of(dialect, _parameters(tasks, _TASK_KEY, TASK_PROGRESS)),
            Unnested.of(
                dialect,
                {
                    "k_operation": operations.c.id,
                    **_parameters(components, _COMPONENT_KEY, _COMPONENT_WRITTEN),
                },
            ),
            Unnested.of(dialect, {name: events.c[name] for name in EVENT_COLUMNS}),
        )
        sources, first = [], 3  # $1 and $2: the timestamps
        for part in parts:
            sources.append(part.source(dialect, "v", first))
            first += len(part.names)
        held = "v.k_operation IN (SELECT id FROM fence)"
        stamp_type = operations.c.updated_at.type
        stamp = f"::{stamp_type.compile(dialect=dialect)}"
        task_update = _update_from(quote, tasks, _TASK_KEY, TASK_PROGRESS, sources[1], held)
        component_update = _update_from(
            quote, components, _COMPONENT_KEY, _COMPONENT_WRITTEN, sources[2], held
        )
        listed = ", ".join(quote(name) for name in EVENT_COLUMNS)
        sql = (
            f"WITH fence AS (UPDATE operations SET updated_at = $1{stamp}, "
            f"lease_expires_at = $2{stamp} FROM {sources[0]} "
            "WHERE operations.id = v.k_id AND operations.fencing = v.k_fence "
            f"RETURNING operations.id, pg_notify('{CHANNEL}', operations.id)), "
            f"t AS ({task_update}), c AS ({component_update}), "
            f"e AS (INSERT INTO events ({listed}) "
            f"SELECT {', '.join('v.' + quote(name) for name in EVENT_COLUMNS)} FROM {sources[3]} "
            "WHERE v.operation_id IN (SELECT id FROM fence)) "
            "SELECT id FROM fence"
        )
        process = stamp_type.dialect_impl(dialect).bind_processor(dialect)
        return cls(sql, parts, process or (lambda value: value))


def _parameters(table: Any, keys: Mapping[str, str], columns: Sequence[str]) -> dict[str, Any]:
    """The parameters of ``update_by_key(table, keys, columns)``, each with its column."""
    return {
        **{param: table.c[column] for column, param in keys.items()},
        **{name: table.c[name] for name in columns},
    }


def _update_from(
    quote: Callable[[str], str],
    table: Any,
    keys: Mapping[str, str],
    columns: Sequence[str],
    source: str,
    condition: str,
) -> str:
    """``UPDATE table SET column = v.column ... FROM source WHERE key = v.param ... AND
    condition``: ``update_by_key``'s statement for rows read from ``source``."""
    name = quote(table.name)
    assignments = ", ".join(f"{quote(column)} = v.{quote(column)}" for column in columns)
    matches = " AND ".join(
        f"{name}.{quote(column)} = v.{quote(param)}" for column, param in keys.items()
    )
    return f"UPDATE {name} SET {assignments} FROM {source} WHERE {matches} AND {condition}"


_WRITE_AT_ONCE = _WriteAtOnce()


async def decode_document(text: str) -> Mapping[str, Any]:
    """A stored descriptor (JSON text); large ones are decoded in a worker thread."""
    decoded = await offload(len(text), json.loads, text)
    if not isinstance(decoded, dict):
        raise ValueError("a stored descriptor is not a mapping")
    return decoded


def settle_release(
    conn: Connection,
    header: OperationHeader,
    outcome: OperationStatus,
    now: datetime,
    *,
    ran: bool = True,
) -> ReleaseStatus:
    """Derive and store the release status once an operation has ended.

    A deploy that ran and touched something (``domain.status.touched``: one of its tasks
    started) becomes the release's last deploy (its version and descriptor); one that touched
    nothing leaves the release as it was before it.
    """
    _lock_release(conn, header.deployment_unit_id, header.environment)
    verdict, changed = _verdict(
        conn, header.deployment_unit_id, header.environment, header.id, outcome
    )
    changes: dict[str, Any] = {
        "status": verdict.status,
        "status_reason": verdict.reason,
        "last_operation_id": header.id,
        "updated_at": now,
    }
    if header.type is OperationType.DEPLOY and ran and changed:
        changes.update(version=header.version, descriptor_operation_id=header.id)
    elif verdict.status is ReleaseStatus.NOT_DEPLOYED:
        changes["version"] = None
    conn.execute(update(releases).where(*release_key(releases, header)).values(changes))
    return verdict.status


def refresh_release(
    conn: Connection, deployment_unit_id: str, environment: str, now: datetime
) -> ReleaseStatus | None:
    """Derive and store the release status again, its publications having moved on (an event
    acknowledged, or overdue); None if there is no such release."""
    last_operation_id = _lock_release(conn, deployment_unit_id, environment)
    if last_operation_id is None:
        return None
    last = conn.execute(
        select(operations.c.status).where(operations.c.id == last_operation_id)
    ).scalar_one_or_none()
    verdict, _ = _verdict(
        conn,
        deployment_unit_id,
        environment,
        last_operation_id,
        OperationStatus.SUCCEEDED if last is None else last,
    )
    conn.execute(
        update(releases)
        .where(
            releases.c.deployment_unit_id == deployment_unit_id,
            releases.c.environment == environment,
        )
        .values(status=verdict.status, status_reason=verdict.reason, updated_at=now)
    )
    return verdict.status


def _lock_release(conn: Connection, deployment_unit_id: str, environment: str) -> str | None:
    """Lock the release row until commit (PostgreSQL; SQLite serialises every write), so that
    an operation's end and a Market Plane's acknowledgement derive its status one after the
    other, each from what the other committed. Returns its last operation."""
    last: str | None = conn.execute(
        select(releases.c.last_operation_id)
        .where(
            releases.c.deployment_unit_id == deployment_unit_id,
            releases.c.environment == environment,
        )
        .with_for_update()
    ).scalar_one_or_none()
    return last


def _verdict(
    conn: Connection,
    deployment_unit_id: str,
    environment: str,
    operation_id: str,
    last_operation: OperationStatus,
) -> tuple[ReleaseVerdict, bool]:
    """The release's verdict after ``operation_id`` (its last operation) ended with
    ``last_operation``, and whether that operation touched anything (``domain.status``)."""
    statuses = conn.execute(
        select(components.c.status).where(
            components.c.deployment_unit_id == deployment_unit_id,
            components.c.environment == environment,
            or_(components.c.member, components.c.status != ComponentStatus.NOT_DEPLOYED),
        )
    ).scalars()
    last = conn.execute(
        select(operations.c.release_status_before, operations.c.type).where(
            operations.c.id == operation_id
        )
    ).one_or_none()
    before, type_ = (None, OperationType.DEPLOY) if last is None else last
    attempts = conn.execute(
        select(tasks.c.attempts)
        .where(tasks.c.operation_id == operation_id, tasks.c.attempts > 0)
        .limit(1)
    ).scalars()
    changed = changes_release(type_, attempts)
    verdict = release_verdict(
        statuses,
        last_operation=last_operation,
        publication=publication_state(conn, deployment_unit_id, environment),
        touched=changed,
        before=before,
    )
    return verdict, changed
