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
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

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
from provisioner.store.views import OperationView, TaskView


@dataclass(frozen=True, slots=True)
class ComponentSeed:
    """A component of a descriptor being deployed, for which the release needs a row."""

    component_id: str
    is_system: bool
    infrastructure_template_id: str | None
    depends_on: tuple[str, ...]


class ReleaseSnapshot:
    """The release as a submission finds it, inside the submission's transaction.

    Component states are read on first use: a full deploy plans without them.
    """

    def __init__(
        self, conn: Connection, deployment_unit_id: str, environment: str, release: Any
    ) -> None:
        self._conn = conn
        self._key = (deployment_unit_id, environment)
        self.exists = release is not None
        self.version: str | None = release.version if release is not None else None

    def ran_since(self, operation_id: str) -> bool:
        """Whether an operation submitted after ``operation_id`` has run on this release."""
        later = self._conn.execute(
            select(operations.c.id)
            .where(
                operations.c.deployment_unit_id == self._key[0],
                operations.c.environment == self._key[1],
                operations.c.id > operation_id,
                operations.c.started_at.is_not(None),
            )
            .limit(1)
        ).first()
        return later is not None

    @cached_property
    def components(self) -> dict[str, ComponentState]:
        rows = self._conn.execute(
            select(components).where(
                components.c.deployment_unit_id == self._key[0],
                components.c.environment == self._key[1],
            )
        ).all()
        return {row.component_id: component_state(row) for row in rows}


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
    seeds: Collection[ComponentSeed] = field(default_factory=tuple)


Planner = Callable[[ReleaseSnapshot], NewOperation]


class Submissions:
    """Creates operations and records cancel requests."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def submit(
        self, deployment_unit_id: str, environment: str, planner: Planner
    ) -> NewOperation:
        """Plan against the current release and store the operation; return it.

        Raises ``OperationActiveError`` if an operation is active there, and whatever the
        planner raises (an invalid request, nothing to undeploy).
        """

        def work(conn: Connection) -> NewOperation:
            release = _open_release(
                conn, deployment_unit_id, environment, lock=not self._db.is_sqlite
            )
            _refuse_if_active(conn, deployment_unit_id, environment)
            new = planner(ReleaseSnapshot(conn, deployment_unit_id, environment, release))
            self._insert(conn, new)
            return new

        for attempt in (1, 2):
            try:
                return await self._db.transaction(work)
            except IntegrityError:
                # Another replica inserted an active operation after our check: name it. If
                # it has already ended, the way is clear: plan again, once.
                await self._db.transaction(
                    lambda conn: _refuse_if_active(conn, deployment_unit_id, environment)
                )
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert(self, conn: Connection, new: NewOperation) -> None:
        now = new.created_at
        conn.execute(
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
        conn.execute(
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
        self._upsert_release(conn, new)
        if new.seeds:
            self._insert_components(conn, new)
        conn.execute(
            insert(events),
            [event_values(new.id, Event(None, None, OperationStatus.PENDING, now))],
        )

    def _insert_for(self, table: Any) -> Any:
        dialect = sqlite if self._db.is_sqlite else postgresql
        return dialect.insert(table)

    def _upsert_release(self, conn: Connection, new: NewOperation) -> None:
        statement = self._insert_for(releases).values(
            deployment_unit_id=new.deployment_unit_id,
            environment=new.environment,
            status=ReleaseStatus.IN_PROGRESS,
            last_operation_id=new.id,
            created_at=new.created_at,
            updated_at=new.created_at,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[releases.c.deployment_unit_id, releases.c.environment],
                set_={
                    "status": ReleaseStatus.IN_PROGRESS,
                    "last_operation_id": new.id,
                    "updated_at": new.created_at,
                },
            )
        )

    def _insert_components(self, conn: Connection, new: NewOperation) -> None:
        """Rows for the descriptor's components not seen before (NOT_DEPLOYED, not yet
        members): membership changes only when the deploy runs, so a deploy cancelled while
        pending leaves the release as it was."""
        statement = self._insert_for(components)
        conn.execute(
            statement.on_conflict_do_nothing(
                index_elements=[
                    components.c.deployment_unit_id,
                    components.c.environment,
                    components.c.component_id,
                ]
            ),
            [
                {
                    "deployment_unit_id": new.deployment_unit_id,
                    "environment": new.environment,
                    "component_id": seed.component_id,
                    "is_system": seed.is_system,
                    "member": False,
                    "status": ComponentStatus.NOT_DEPLOYED,
                    "infrastructure_template_id": seed.infrastructure_template_id,
                    "depends_on": list(seed.depends_on),
                    "updated_at": new.created_at,
                }
                for seed in new.seeds
            ],
        )

    async def request_cancel(self, operation_id: str, *, now: datetime) -> str:
        """Cancel a pending operation at once, or flag a running one for its owner.

        Returns the operation's status after the request. Raises ``NotFoundError`` or
        ``OperationFinishedError``.
        """

        def work(conn: Connection) -> str:
            query = select(operations).where(operations.c.id == operation_id)
            if not self._db.is_sqlite:
                query = query.with_for_update()
            row = conn.execute(query).one_or_none()
            if row is None:
                raise NotFoundError(f"operation {operation_id} does not exist")
            if row.status not in ACTIVE_OPERATION_STATUSES:
                raise OperationFinishedError(f"operation {operation_id} already ended {row.status}")
            if row.status == OperationStatus.PENDING:
                _cancel_pending(conn, row, now)
                return OperationStatus.CANCELLED
            conn.execute(
                update(operations)
                .where(operations.c.id == operation_id)
                .values(cancel_requested=True, updated_at=now)
            )
            return OperationStatus.RUNNING

        return await self._db.transaction(work)


def _open_release(
    conn: Connection, deployment_unit_id: str, environment: str, *, lock: bool
) -> Any:
    """The release row (or None), locked until commit on PostgreSQL so that submissions for
    one release are serialised (SQLite's BEGIN IMMEDIATE already serialises every write)."""
    query = select(releases.c.version).where(
        releases.c.deployment_unit_id == deployment_unit_id,
        releases.c.environment == environment,
    )
    return conn.execute(query.with_for_update() if lock else query).first()


def _refuse_if_active(conn: Connection, deployment_unit_id: str, environment: str) -> None:
    active = conn.execute(
        select(operations.c.id).where(
            operations.c.deployment_unit_id == deployment_unit_id,
            operations.c.environment == environment,
            operations.c.status.in_(ACTIVE_OPERATION_STATUSES),
        )
    ).scalar_one_or_none()
    if active is not None:
        raise OperationActiveError(deployment_unit_id, environment, active)


def submitted_view(new: NewOperation) -> OperationView:
    """The operation as it was just stored: PENDING, every task WAITING."""
    return OperationView(
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
        cancel_requested=False,
        error=None,
        created_at=new.created_at,
        started_at=None,
        finished_at=None,
        tasks=[
            TaskView(
                component_id=step.component_id,
                action=step.action,
                status=TaskStatus.WAITING,
                depends_on=list(step.depends_on),
                attempts=0,
                started_at=None,
                finished_at=None,
                public_info=None,
                logs=None,
                error=None,
                is_system=step.is_system,
                infrastructure_template_id=step.infrastructure_template_id,
            )
            for step in new.plan.steps
        ],
    )


def _cancel_pending(conn: Connection, row: Any, now: datetime) -> None:
    """Nothing of a pending operation has run: every task and the operation end CANCELLED."""
    task_ids = (
        (conn.execute(select(tasks.c.component_id).where(tasks.c.operation_id == row.id)))
        .scalars()
        .all()
    )
    conn.execute(
        update(tasks)
        .where(tasks.c.operation_id == row.id)
        .values(status=TaskStatus.CANCELLED, finished_at=now)
    )
    conn.execute(
        update(operations)
        .where(operations.c.id == row.id)
        .values(status=OperationStatus.CANCELLED, finished_at=now, updated_at=now)
    )
    conn.execute(
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
    settle_release(conn, header_of(row), OperationStatus.CANCELLED, now, ran=False)
