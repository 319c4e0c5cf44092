"""The engine's durable state in SQL: claiming operations, applying fenced writes, leases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, or_, select, tuple_, update

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskStatus,
    derive_release_status,
)
from provisioner.engine.ports import (
    ClaimedOperation,
    ComponentState,
    Event,
    Fence,
    OperationHeader,
    StateWrite,
)
from provisioner.store.database import Database
from provisioner.store.models import components, events, operations, releases, tasks
from provisioner.store.rows import component_state, component_values, task_state, task_values

# Descriptors above this size are decoded in a worker thread, off the event loop.
_THREAD_DECODE_BYTES = 256 * 1024

_UPDATE_TASK = (
    update(tasks)
    .where(
        tasks.c.operation_id == bindparam("k_operation"),
        tasks.c.component_id == bindparam("k_component"),
    )
    .values(
        {
            name: bindparam(name)
            for name in (
                "status",
                "attempts",
                "token",
                "started_at",
                "finished_at",
                "public_info",
                "private_info",
                "logs",
                "error",
            )
        }
    )
)
_UPDATE_COMPONENT = (
    update(components)
    .where(
        components.c.deployment_unit_id == bindparam("k_unit"),
        components.c.environment == bindparam("k_environment"),
        components.c.component_id == bindparam("k_component"),
    )
    .values(
        {
            name: bindparam(name)
            for name in (
                "status",
                "version",
                "infrastructure_template_id",
                "depends_on",
                "last_sent_operation_id",
                "last_provisioned_operation_id",
                "public_info",
                "private_info",
                "logs",
                "last_operation_id",
                "last_operation_type",
                "last_task_status",
                "last_finished_at",
                "updated_at",
            )
        }
    )
)


_LEASE = bindparam("lease", type_=operations.c.lease_expires_at.type)
# Renew one operation's lease (keep it when no lease is given) if its fence still holds.
_RENEW_ONE = (
    update(operations)
    .where(operations.c.id == bindparam("k_id"), operations.c.fencing == bindparam("k_fence"))
    .values(
        updated_at=bindparam("now", type_=operations.c.updated_at.type),
        lease_expires_at=func.coalesce(_LEASE, operations.c.lease_expires_at),
    )
    .returning(operations.c.id)
)
INSERT_EVENTS = insert(events)


def event_values(operation_id: str, event: Event) -> dict[str, Any]:
    return {
        "operation_id": operation_id,
        "component_id": event.component_id,
        "old_status": event.old_status,
        "new_status": event.new_status,
        "at": event.at,
        "detail": event.detail,
    }


class SqlOperationStore:
    """``OperationStore`` on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

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
        taken = await self._db.transaction(
            lambda conn: self._take(
                conn,
                owner=owner,
                replica_id=replica_id,
                limit=limit,
                lease_seconds=lease_seconds,
                now=now,
                running=running,
            )
        )
        return await self._load(taken) if taken else []

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
    ) -> list[tuple[str, int]]:
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
        query = select(ops.id, ops.status, ops.fencing, ops.started_at, ops.owner)
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
            if row.status == OperationStatus.RUNNING:
                detail["resumedFrom"] = row.owner
            claimed_events.append(
                event_values(row.id, Event(None, row.status, OperationStatus.RUNNING, now, detail))
            )
        conn.execute(INSERT_EVENTS, claimed_events)
        return [(row.id, row.fencing + 1) for row in rows]

    async def _load(self, taken: Sequence[tuple[str, int]]) -> list[ClaimedOperation]:
        """Everything needed to run the claimed operations, in five queries for all of them."""
        fences = dict(taken)
        async with self._db.read() as conn:
            ops = (
                await conn.execute(
                    select(operations)
                    .where(operations.c.id.in_(list(fences)))
                    .order_by(operations.c.id)  # submission order, as claimed
                )
            ).all()
            ops = [op for op in ops if op.fencing == fences[op.id]]
            if not ops:
                return []
            releases_of = list({(op.deployment_unit_id, op.environment) for op in ops})
            task_rows = (
                await conn.execute(
                    select(tasks)
                    .where(tasks.c.operation_id.in_([op.id for op in ops]))
                    .order_by(tasks.c.operation_id, tasks.c.position)
                )
            ).all()
            component_rows = (
                await conn.execute(
                    select(components).where(
                        tuple_(components.c.deployment_unit_id, components.c.environment).in_(
                            releases_of
                        )
                    )
                )
            ).all()
            release_rows = (
                await conn.execute(
                    select(
                        releases.c.deployment_unit_id,
                        releases.c.environment,
                        releases.c.descriptor_operation_id,
                    ).where(
                        tuple_(releases.c.deployment_unit_id, releases.c.environment).in_(
                            releases_of
                        )
                    )
                )
            ).all()
            parts = _Parts(ops, task_rows, component_rows, release_rows)
            texts = (
                await conn.execute(
                    select(operations.c.id, operations.c.descriptor).where(
                        operations.c.id.in_(parts.documents_needed()),
                        operations.c.descriptor.is_not(None),
                    )
                )
            ).all()
        documents = {
            row.id: (await decode_document(row.descriptor), len(row.descriptor)) for row in texts
        }
        return [parts.claimed(op, documents) for op in ops]

    # --- fenced writes ----------------------------------------------------------------------

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        return await self._db.transaction(
            lambda conn: self._apply(conn, writes, lease_seconds, datetime.now(UTC))
        )

    def _apply(
        self, conn: Connection, writes: Sequence[StateWrite], lease_seconds: float, now: datetime
    ) -> set[str]:
        failed = self._check_fences(conn, [write.fence for write in writes], lease_seconds, now)
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
    ) -> set[str]:
        """Renew the lease of each operation whose fence holds; return those whose does not.

        On PostgreSQL the UPDATE also locks the row until commit, so a concurrent takeover
        (which increments the fence) waits for this transaction and then wins.
        """
        wanted = {(fence.operation_id, fence.token) for fence in fences}
        lease = None if lease_seconds is None else now + timedelta(seconds=lease_seconds)
        if len(wanted) == 1:  # the usual case, with a statement prepared once
            ((operation_id, token),) = wanted
            held = conn.execute(
                _RENEW_ONE,
                {"k_id": operation_id, "k_fence": token, "now": now, "lease": lease},
            ).scalars()
        else:
            held = conn.execute(
                update(operations)
                .where(tuple_(operations.c.id, operations.c.fencing).in_(sorted(wanted)))
                .values(
                    updated_at=now,
                    lease_expires_at=func.coalesce(
                        bindparam("lease"), operations.c.lease_expires_at
                    ),
                )
                .returning(operations.c.id),
                {"lease": lease},
            ).scalars()
        return {operation_id for operation_id, _ in wanted} - set(held)

    def _write_rows(self, conn: Connection, writes: Sequence[StateWrite], now: datetime) -> None:
        task_params: dict[tuple[str, str], dict[str, Any]] = {}
        component_params: dict[tuple[str, str, str], dict[str, Any]] = {}
        event_params: list[dict[str, Any]] = []
        for write in writes:
            header = write.header
            for task in write.tasks:
                task_params[(header.id, task.component_id)] = {
                    "k_operation": header.id,
                    "k_component": task.component_id,
                    **task_values(task),
                }
            for component in write.components:
                key = (header.deployment_unit_id, header.environment, component.component_id)
                component_params[key] = {
                    "k_unit": key[0],
                    "k_environment": key[1],
                    "k_component": key[2],
                    "updated_at": now,
                    **component_values(component),
                }
            event_params.extend(event_values(header.id, event) for event in write.events)
        if task_params:
            conn.execute(_UPDATE_TASK, list(task_params.values()))
        if component_params:
            conn.execute(_UPDATE_COMPONENT, list(component_params.values()))
        if event_params:
            conn.execute(INSERT_EVENTS, event_params)

    def _write_operation(self, conn: Connection, write: StateWrite, now: datetime) -> None:
        assert write.operation is not None
        header, outcome = write.header, write.operation
        values: dict[str, Any] = {
            "status": outcome.status,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
            "error": outcome.error,
            "updated_at": now,
        }
        terminal = not OperationStatus(outcome.status).is_active
        if terminal:
            values.update(owner=None, lease_expires_at=None)
        conn.execute(update(operations).where(operations.c.id == header.id).values(values))
        if terminal:
            settle_release(conn, header, OperationStatus(outcome.status), now)

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


class _Parts:
    """The rows of a claim batch, sorted out per operation."""

    def __init__(
        self,
        ops: Sequence[Row[Any]],
        task_rows: Sequence[Row[Any]],
        component_rows: Sequence[Row[Any]],
        release_rows: Sequence[Row[Any, Any, Any]],
    ) -> None:
        self.tasks: dict[str, list[Row[Any]]] = {op.id: [] for op in ops}
        for row in task_rows:
            self.tasks[row.operation_id].append(row)
        self.states: dict[tuple[str, str], dict[str, ComponentState]] = {}
        for row in component_rows:
            key = (row.deployment_unit_id, row.environment)
            self.states.setdefault(key, {})[row.component_id] = component_state(row)
        self.release_descriptor = {
            (row.deployment_unit_id, row.environment): row.descriptor_operation_id
            for row in release_rows
        }
        self.needed = {op.id: self._needed(op) for op in ops}

    def _needed(self, op: Row[Any]) -> set[str]:
        key = (op.deployment_unit_id, op.environment)
        needed = {self.release_descriptor.get(key)} - {None}
        if op.type == OperationType.DEPLOY:
            needed.add(op.id)
        else:
            states = self.states.get(key, {})
            for row in self.tasks[op.id]:
                state = states[row.component_id]
                needed.add(state.last_provisioned_operation_id or state.last_sent_operation_id)
        return {op_id for op_id in needed if op_id}

    def documents_needed(self) -> list[str]:
        return sorted(set().union(*self.needed.values()))

    def claimed(
        self, op: Row[Any], documents: Mapping[str, tuple[Mapping[str, Any], int]]
    ) -> ClaimedOperation:
        key = (op.deployment_unit_id, op.environment)
        mine = {op_id: documents[op_id] for op_id in self.needed[op.id] if op_id in documents}
        return ClaimedOperation(
            header=header_of(op),
            fence=Fence(op.id, op.fencing),
            status=OperationStatus(op.status),
            started_at=op.started_at,
            cancel_requested=op.cancel_requested,
            tasks=[task_state(row) for row in self.tasks[op.id]],
            components=dict(self.states.get(key, {})),
            documents={op_id: document for op_id, (document, _) in mine.items()},
            release_descriptor_operation_id=self.release_descriptor.get(key),
            documents_size=sum(size for _, size in mine.values()),
        )


_SET_MEMBER = (
    update(components)
    .where(
        components.c.deployment_unit_id == bindparam("k_unit"),
        components.c.environment == bindparam("k_environment"),
        components.c.component_id == bindparam("k_component"),
    )
    .values(member=True)
)


def _record_members(conn: Connection, header: OperationHeader, members: Sequence[str]) -> None:
    """From now on the release is made of these (and of whatever is still deployed)."""
    conn.execute(
        update(components)
        .where(
            components.c.deployment_unit_id == header.deployment_unit_id,
            components.c.environment == header.environment,
        )
        .values(member=False)
    )
    conn.execute(
        _SET_MEMBER,
        [
            {
                "k_unit": header.deployment_unit_id,
                "k_environment": header.environment,
                "k_component": component_id,
            }
            for component_id in members
        ],
    )


def _abandon(conn: Connection, header: OperationHeader, message: str, now: datetime) -> None:
    """End an operation FAILED after an internal error, writing statuses only."""
    unfinished = conn.execute(
        select(tasks.c.component_id, tasks.c.status).where(
            tasks.c.operation_id == header.id,
            tasks.c.status.in_([TaskStatus.WAITING, TaskStatus.RUNNING]),
        )
    ).all()
    error = {"message": message}
    conn.execute(
        update(tasks)
        .where(
            tasks.c.operation_id == header.id,
            tasks.c.status.in_([TaskStatus.WAITING, TaskStatus.RUNNING]),
        )
        .values(status=TaskStatus.FAILED, finished_at=now, error=error)
    )
    called = [row.component_id for row in unfinished if row.status == TaskStatus.RUNNING]
    if called:  # their adapter may have acted: nobody knows what is deployed
        conn.execute(
            update(components)
            .where(
                components.c.deployment_unit_id == header.deployment_unit_id,
                components.c.environment == header.environment,
                components.c.component_id.in_(called),
            )
            .values(
                status=ComponentStatus.CORRUPT,
                last_operation_id=header.id,
                last_operation_type=header.type,
                last_task_status=TaskStatus.FAILED,
                last_finished_at=now,
                updated_at=now,
            )
        )
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
    conn.execute(
        INSERT_EVENTS,
        [
            *(
                event_values(header.id, Event(row.component_id, row.status, TaskStatus.FAILED, now))
                for row in unfinished
            ),
            event_values(
                header.id,
                Event(None, OperationStatus.RUNNING, OperationStatus.FAILED, now, error),
            ),
        ],
    )
    settle_release(conn, header, OperationStatus.FAILED, now)


def header_of(row: Any) -> OperationHeader:
    return OperationHeader(
        id=row.id,
        type=OperationType(row.type),
        deployment_unit_id=row.deployment_unit_id,
        environment=row.environment,
        version=row.version,
        remove_data=row.remove_data,
        created_at=row.created_at,
    )


async def decode_document(text: str) -> Mapping[str, Any]:
    """A stored descriptor (JSON text); large ones are decoded in a worker thread."""
    if len(text) > _THREAD_DECODE_BYTES:
        decoded = await asyncio.to_thread(json.loads, text)
    else:
        decoded = json.loads(text)
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

    A deploy that ran becomes the release's last deploy (its version and descriptor).
    """
    where = (
        components.c.deployment_unit_id == header.deployment_unit_id,
        components.c.environment == header.environment,
    )
    statuses = conn.execute(
        select(components.c.status).where(
            *where,
            or_(components.c.member, components.c.status != ComponentStatus.NOT_DEPLOYED),
        )
    ).scalars()
    status = derive_release_status(
        (ComponentStatus(value) for value in statuses), last_operation=outcome
    )
    values: dict[str, Any] = {"status": status, "last_operation_id": header.id, "updated_at": now}
    if header.type is OperationType.DEPLOY and ran:
        values.update(version=header.version, descriptor_operation_id=header.id)
    elif status is ReleaseStatus.NOT_DEPLOYED:
        values["version"] = None
    conn.execute(
        update(releases)
        .where(
            releases.c.deployment_unit_id == header.deployment_unit_id,
            releases.c.environment == header.environment,
        )
        .values(values)
    )
    return status
