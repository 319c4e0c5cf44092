"""The engine's durable state in SQL: claiming operations, applying fenced writes, leases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    derive_release_status,
)
from provisioner.engine.ports import (
    ClaimedOperation,
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
        async with self._db.write() as conn:
            taken = await self._take(
                conn,
                owner=owner,
                replica_id=replica_id,
                limit=limit,
                lease_seconds=lease_seconds,
                now=now,
                running=running,
            )
        claimed = []
        for operation_id, fence in taken:
            operation = await self._load(operation_id, fence)
            if operation is not None:
                claimed.append(operation)
        return claimed

    async def _take(
        self,
        conn: AsyncConnection,
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
        taken = []
        for row in (await conn.execute(query)).all():
            fence = row.fencing + 1
            await conn.execute(
                update(operations)
                .where(ops.id == row.id)
                .values(
                    owner=owner,
                    replica_id=replica_id,
                    fencing=fence,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    status=OperationStatus.RUNNING,
                    started_at=row.started_at or now,
                    updated_at=now,
                )
            )
            detail: dict[str, Any] = {"owner": owner, "fence": fence}
            if row.status == OperationStatus.RUNNING:
                detail["resumedFrom"] = row.owner
            await conn.execute(
                insert(events),
                [
                    event_values(
                        row.id, Event(None, row.status, OperationStatus.RUNNING, now, detail)
                    )
                ],
            )
            taken.append((row.id, fence))
        return taken

    async def _load(self, operation_id: str, fence: int) -> ClaimedOperation | None:
        async with self._db.read() as conn:
            op = (
                await conn.execute(select(operations).where(operations.c.id == operation_id))
            ).one_or_none()
            if op is None or op.fencing != fence:
                return None
            task_rows = (
                await conn.execute(
                    select(tasks)
                    .where(tasks.c.operation_id == operation_id)
                    .order_by(tasks.c.position)
                )
            ).all()
            component_rows = (
                await conn.execute(
                    select(components).where(
                        components.c.deployment_unit_id == op.deployment_unit_id,
                        components.c.environment == op.environment,
                    )
                )
            ).all()
            release_descriptor = (
                await conn.execute(
                    select(releases.c.descriptor_operation_id).where(
                        releases.c.deployment_unit_id == op.deployment_unit_id,
                        releases.c.environment == op.environment,
                    )
                )
            ).scalar_one_or_none()
            states = {row.component_id: component_state(row) for row in component_rows}
            needed = {release_descriptor} if release_descriptor else set()
            if op.type == OperationType.DEPLOY:
                needed.add(op.id)
            else:
                for row in task_rows:
                    state = states[row.component_id]
                    needed.add(
                        state.last_provisioned_operation_id or state.last_sent_operation_id or ""
                    )
            texts = (
                await conn.execute(
                    select(operations.c.id, operations.c.descriptor).where(
                        operations.c.id.in_(needed - {""}), operations.c.descriptor.is_not(None)
                    )
                )
            ).all()
        return ClaimedOperation(
            header=header_of(op),
            fence=Fence(operation_id, fence),
            status=OperationStatus(op.status),
            started_at=op.started_at,
            cancel_requested=op.cancel_requested,
            tasks=[task_state(row) for row in task_rows],
            components=states,
            documents={row.id: await decode_document(row.descriptor) for row in texts},
            release_descriptor_operation_id=release_descriptor,
        )

    # --- fenced writes ----------------------------------------------------------------------

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        now = datetime.now(UTC)
        async with self._db.write() as conn:
            failed = await self._check_fences(
                conn, [write.fence for write in writes], lease_seconds, now
            )
            live = [write for write in writes if write.fence.operation_id not in failed]
            await self._write_rows(conn, live, now)
            for write in live:
                if write.operation is not None:
                    await self._write_operation(conn, write, now)
        return failed

    async def _check_fences(
        self,
        conn: AsyncConnection,
        fences: Sequence[Fence],
        lease_seconds: float | None,
        now: datetime,
    ) -> set[str]:
        """Renew the lease of each operation whose fence holds; return those whose does not.

        On PostgreSQL the UPDATE also locks the row until commit, so a concurrent takeover
        (which increments the fence) waits for this transaction and then wins.
        """
        failed: set[str] = set()
        values: dict[str, Any] = {"updated_at": now}
        if lease_seconds is not None:
            values["lease_expires_at"] = now + timedelta(seconds=lease_seconds)
        for fence in dict.fromkeys(fences):
            result = await conn.execute(
                update(operations)
                .where(operations.c.id == fence.operation_id, operations.c.fencing == fence.token)
                .values(values)
            )
            if result.rowcount == 0:
                failed.add(fence.operation_id)
        return failed

    async def _write_rows(
        self, conn: AsyncConnection, writes: Sequence[StateWrite], now: datetime
    ) -> None:
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
            await conn.execute(_UPDATE_TASK, list(task_params.values()))
        if component_params:
            await conn.execute(_UPDATE_COMPONENT, list(component_params.values()))
        if event_params:
            await conn.execute(insert(events), event_params)

    async def _write_operation(
        self, conn: AsyncConnection, write: StateWrite, now: datetime
    ) -> None:
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
        await conn.execute(update(operations).where(operations.c.id == header.id).values(values))
        if terminal:
            await settle_release(conn, header, OperationStatus(outcome.status), now)

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
        async with self._db.write() as conn:
            lost = await self._check_fences(conn, fences, lease_seconds, now)
            cancels = (
                await conn.execute(
                    select(operations.c.id).where(
                        operations.c.id.in_(ids), operations.c.cancel_requested
                    )
                )
            ).scalars()
            return lost, set(cancels) - lost

    async def release_leases(self, fences: Sequence[Fence]) -> None:
        if not fences:
            return
        async with self._db.write() as conn:
            await conn.execute(
                update(operations)
                .where(
                    operations.c.id == bindparam("k_id"),
                    operations.c.fencing == bindparam("k_fence"),
                )
                .values(owner=None, lease_expires_at=None),
                [{"k_id": fence.operation_id, "k_fence": fence.token} for fence in fences],
            )


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


async def settle_release(
    conn: AsyncConnection,
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
    statuses = (
        await conn.execute(
            select(components.c.status).where(
                *where,
                or_(components.c.member, components.c.status != ComponentStatus.NOT_DEPLOYED),
            )
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
    await conn.execute(
        update(releases)
        .where(
            releases.c.deployment_unit_id == header.deployment_unit_id,
            releases.c.environment == header.environment,
        )
        .values(values)
    )
    return status
