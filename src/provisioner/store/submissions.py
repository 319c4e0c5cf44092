"""Writing new operations, and cancel requests, atomically with the checks they depend on.

A submission reads the release, plans against it and inserts the operation in one transaction
(``BEGIN IMMEDIATE`` on SQLite; the release row locked on PostgreSQL), so the plan cannot go stale
between the read and the write. A partial unique index allows one active operation per unit and
environment; two replicas inserting at the same instant get one success and one 409.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioner.domain.plan import Plan
from provisioner.domain.status import (
    ACTIVE_OPERATION_STATUSES,
    ComponentStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskStatus,
)
from provisioner.engine.ports import ComponentState, Event
from provisioner.errors import NotFoundError, OperationActiveError, OperationFinishedError
from provisioner.store.database import Database
from provisioner.store.models import components, events, operations, releases, tasks
from provisioner.store.operations import event_values, header_of, settle_release
from provisioner.store.rows import component_state


@dataclass(frozen=True, slots=True)
class ComponentSeed:
    """A component of a deployed descriptor, so the release knows all its members."""

    component_id: str
    is_system: bool
    infrastructure_template_id: str | None
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReleaseSnapshot:
    """The release as a submission finds it."""

    exists: bool
    version: str | None
    components: dict[str, ComponentState]


@dataclass(frozen=True, slots=True)
class NewOperation:
    """An operation ready to be stored: its plan and, for deploys, the descriptor."""

    id: str
    type: OperationType
    deployment_unit_id: str
    environment: str
    version: str | None
    remove_data: bool
    plan: Plan
    created_at: datetime
    descriptor_json: str | None = None
    requested_components: Sequence[str] | None = None
    retry_of: str | None = None
    members: Collection[ComponentSeed] = field(default_factory=tuple)


Planner = Callable[[ReleaseSnapshot], NewOperation]


class Submissions:
    """Creates operations and records cancel requests."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def submit(self, deployment_unit_id: str, environment: str, planner: Planner) -> str:
        """Plan against the current release and store the operation; return its id.

        Raises ``OperationActiveError`` if an operation is active there, and whatever the
        planner raises (an invalid request, nothing to undeploy).
        """
        try:
            async with self._db.write() as conn:
                await _refuse_if_active(
                    conn, deployment_unit_id, environment, lock=not self._db.is_sqlite
                )
                snapshot = await _snapshot(conn, deployment_unit_id, environment)
                new = planner(snapshot)
                await self._insert(conn, new)
        except IntegrityError:
            # Another replica inserted an active operation after our check.
            async with self._db.read() as conn:
                await _refuse_if_active(conn, deployment_unit_id, environment, lock=False)
            raise
        return new.id

    async def _insert(self, conn: AsyncConnection, new: NewOperation) -> None:
        now = new.created_at
        await conn.execute(
            insert(operations).values(
                id=new.id,
                type=new.type,
                deployment_unit_id=new.deployment_unit_id,
                environment=new.environment,
                version=new.version,
                status=OperationStatus.PENDING,
                remove_data=new.remove_data,
                requested_components=list(new.requested_components)
                if new.requested_components is not None
                else None,
                retry_of=new.retry_of,
                descriptor=new.descriptor_json,
                cancel_requested=False,
                fencing=0,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            insert(tasks),
            [
                {
                    "operation_id": new.id,
                    "component_id": step.component_id,
                    "position": position,
                    "action": step.action,
                    "status": TaskStatus.WAITING,
                    "is_system": step.is_system,
                    "infrastructure_template_id": step.infrastructure_template_id,
                    "depends_on": list(step.depends_on),
                    "attempts": 0,
                }
                for position, step in enumerate(new.plan.steps)
            ],
        )
        await self._upsert_release(conn, new)
        if new.members:
            await self._upsert_members(conn, new)
        await conn.execute(
            insert(events),
            [event_values(new.id, Event(None, None, OperationStatus.PENDING, now))],
        )

    def _insert_for(self, table: Any) -> Any:
        dialect = sqlite if self._db.is_sqlite else postgresql
        return dialect.insert(table)

    async def _upsert_release(self, conn: AsyncConnection, new: NewOperation) -> None:
        statement = self._insert_for(releases).values(
            deployment_unit_id=new.deployment_unit_id,
            environment=new.environment,
            status=ReleaseStatus.IN_PROGRESS,
            last_operation_id=new.id,
            created_at=new.created_at,
            updated_at=new.created_at,
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[releases.c.deployment_unit_id, releases.c.environment],
                set_={
                    "status": ReleaseStatus.IN_PROGRESS,
                    "last_operation_id": new.id,
                    "updated_at": new.created_at,
                },
            )
        )

    async def _upsert_members(self, conn: AsyncConnection, new: NewOperation) -> None:
        """Record the deployed descriptor's components as the release's members."""
        await conn.execute(
            update(components)
            .where(
                components.c.deployment_unit_id == new.deployment_unit_id,
                components.c.environment == new.environment,
            )
            .values(member=False)
        )
        statement = self._insert_for(components)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    components.c.deployment_unit_id,
                    components.c.environment,
                    components.c.component_id,
                ],
                set_={"member": True},
            ),
            [
                {
                    "deployment_unit_id": new.deployment_unit_id,
                    "environment": new.environment,
                    "component_id": seed.component_id,
                    "is_system": seed.is_system,
                    "member": True,
                    "status": ComponentStatus.NOT_DEPLOYED,
                    "infrastructure_template_id": seed.infrastructure_template_id,
                    "depends_on": list(seed.depends_on),
                    "updated_at": new.created_at,
                }
                for seed in new.members
            ],
        )

    async def request_cancel(self, operation_id: str, *, now: datetime) -> str:
        """Cancel a pending operation at once, or flag a running one for its owner.

        Returns the operation's status after the request. Raises ``NotFoundError`` or
        ``OperationFinishedError``.
        """
        async with self._db.write() as conn:
            query = select(operations).where(operations.c.id == operation_id)
            if not self._db.is_sqlite:
                query = query.with_for_update()
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                raise NotFoundError(f"operation {operation_id} does not exist")
            if row.status not in ACTIVE_OPERATION_STATUSES:
                raise OperationFinishedError(f"operation {operation_id} already ended {row.status}")
            if row.status == OperationStatus.PENDING:
                await _cancel_pending(conn, row, now)
                return OperationStatus.CANCELLED
            await conn.execute(
                update(operations)
                .where(operations.c.id == operation_id)
                .values(cancel_requested=True, updated_at=now)
            )
            return OperationStatus.RUNNING


async def _refuse_if_active(
    conn: AsyncConnection, deployment_unit_id: str, environment: str, *, lock: bool
) -> None:
    if lock:
        # Serialise submissions for this release (when it exists) until commit.
        await conn.execute(
            select(releases.c.status)
            .where(
                releases.c.deployment_unit_id == deployment_unit_id,
                releases.c.environment == environment,
            )
            .with_for_update()
        )
    active = (
        await conn.execute(
            select(operations.c.id).where(
                operations.c.deployment_unit_id == deployment_unit_id,
                operations.c.environment == environment,
                operations.c.status.in_(ACTIVE_OPERATION_STATUSES),
            )
        )
    ).scalar_one_or_none()
    if active is not None:
        raise OperationActiveError(deployment_unit_id, environment, active)


async def _snapshot(
    conn: AsyncConnection, deployment_unit_id: str, environment: str
) -> ReleaseSnapshot:
    release = (
        await conn.execute(
            select(releases.c.version).where(
                releases.c.deployment_unit_id == deployment_unit_id,
                releases.c.environment == environment,
            )
        )
    ).first()
    rows = (
        await conn.execute(
            select(components).where(
                components.c.deployment_unit_id == deployment_unit_id,
                components.c.environment == environment,
            )
        )
    ).all()
    return ReleaseSnapshot(
        exists=release is not None,
        version=release.version if release is not None else None,
        components={row.component_id: component_state(row) for row in rows},
    )


async def _cancel_pending(conn: AsyncConnection, row: Any, now: datetime) -> None:
    """Nothing of a pending operation has run: every task and the operation end CANCELLED."""
    task_ids = (
        (await conn.execute(select(tasks.c.component_id).where(tasks.c.operation_id == row.id)))
        .scalars()
        .all()
    )
    await conn.execute(
        update(tasks)
        .where(tasks.c.operation_id == row.id)
        .values(status=TaskStatus.CANCELLED, finished_at=now)
    )
    await conn.execute(
        update(operations)
        .where(operations.c.id == row.id)
        .values(status=OperationStatus.CANCELLED, finished_at=now, updated_at=now)
    )
    await conn.execute(
        insert(events),
        [
            *(
                event_values(row.id, Event(cid, TaskStatus.WAITING, TaskStatus.CANCELLED, now))
                for cid in task_ids
            ),
            event_values(
                row.id, Event(None, OperationStatus.PENDING, OperationStatus.CANCELLED, now)
            ),
        ],
    )
    await settle_release(conn, header_of(row), OperationStatus.CANCELLED, now, ran=False)
