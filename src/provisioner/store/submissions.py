"""Writing new operations, and cancel requests, atomically with the checks they depend on.

A submission is planned against the release as ``release_state`` read it, in one statement (one
consistent snapshot), outside any transaction; ``submit`` then stores the operation only if the
release has not changed since (no operation was submitted there in between), in a transaction
that locks the release row on PostgreSQL (``BEGIN IMMEDIATE`` serialises writes on SQLite). A
partial unique index allows one active operation per unit and environment; two replicas
inserting at the same instant get one success and one 409.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from provisioner.domain.plan import STEP_FIELDS, Plan
from provisioner.domain.status import (
    ACTIVE_OPERATION_STATUSES,
    ComponentStatus,
    Interruption,
    OperationStatus,
    ReleaseStatus,
    TaskStatus,
    may_override,
    operation_outcome,
)
from provisioner.engine.ports import ComponentState, Event, OperationHeader, TaskState
from provisioner.errors import (
    ConflictError,
    NotFoundError,
    OperationActiveError,
    OperationFinishedError,
    Problem,
    ReleaseChangedError,
)
from provisioner.store.database import Database
from provisioner.store.models import (
    components,
    operation_documents,
    operations,
    releases,
    tasks,
)
from provisioner.store.notifications import insert_events
from provisioner.store.operations import event_values, settle_release
from provisioner.store.queries import release_rows
from provisioner.store.records import (
    Prepared,
    field_names,
    insert_columns,
    record,
    records,
    values,
)
from provisioner.store.views import OperationView

_HEADER_FIELDS = field_names(OperationHeader)
_STEP_FIELDS = tuple(name for name in field_names(TaskState) if name in STEP_FIELDS)
_COMPONENT_FIELDS = field_names(ComponentState)
# Written for every step and every new component of a submitted operation: thousands of rows
# for a large unit, the creation of the operation on the way to its first adapter call.
_TASK_COLUMNS = (*_STEP_FIELDS, "operation_id", "position", "status", "attempts")
_INSERT_TASKS = Prepared(insert_columns(tasks, _TASK_COLUMNS))
_COMPONENT_COLUMNS = (
    *_COMPONENT_FIELDS,
    "deployment_unit_id",
    "environment",
    "member",
    "updated_at",
)
_COMPONENT_KEY = [
    components.c.deployment_unit_id,
    components.c.environment,
    components.c.component_id,
]
# Components not seen before (a component already known keeps its row), on each backend.
_INSERT_NEW_COMPONENTS = {
    dialect: Prepared(
        insert_columns(components, _COMPONENT_COLUMNS, dialect=dialect).on_conflict_do_nothing(
            index_elements=_COMPONENT_KEY
        )
    )
    for dialect in (sqlite, postgresql)
}


@dataclass(frozen=True, slots=True)
class ReleaseState:
    """A release as a submission plans against it: a value read at one instant.

    ``last_operation_id`` changes with every submission, so it tells ``submit`` whether the
    release is still as planned against.
    """

    deployment_unit_id: str
    environment: str
    version: str | None = None
    last_operation_id: str | None = None
    active_operation_id: str | None = None
    last_started_operation_id: str | None = None
    components: dict[str, ComponentState] = field(default_factory=dict)
    descriptor_operation_id: str | None = None  # the release's last deploy


@dataclass(frozen=True, slots=True)
class NewOperation:
    """An operation ready to be stored: its plan and, for a deploy, its descriptor and the
    component rows the release needs (created NOT_DEPLOYED where they do not exist yet)."""

    header: OperationHeader
    plan: Plan
    descriptor_json: str | None = None
    requested_components: tuple[str, ...] | None = None
    retry_of: str | None = None
    components: tuple[ComponentState, ...] = ()
    warnings: tuple[Problem, ...] = ()
    # Said on the operation's first event (PENDING): how the request was read, such as the
    # environment a descriptor was promoted from.
    detail: dict[str, Any] | None = None

    def view(self) -> OperationView:
        """The operation as it is stored: PENDING, every task WAITING."""
        return OperationView(
            **values(self.header, _HEADER_FIELDS),
            status=OperationStatus.PENDING,
            requested_components=self.requested_components,
            retry_of=self.retry_of,
            warnings=self.warnings,
            tasks=tuple(
                TaskState(**values(step, _STEP_FIELDS), status=TaskStatus.WAITING)
                for step in self.plan.steps
            ),
        )


class Submissions:
    """Reads releases to plan against, creates operations and records cancel requests."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def release_state(self, deployment_unit_id: str, environment: str) -> ReleaseState:
        """The release now (an empty one if nothing was ever submitted there)."""
        ops = operations.c
        of_release = (ops.deployment_unit_id == deployment_unit_id, ops.environment == environment)
        active = (
            select(ops.id)
            .where(*of_release, ops.status.in_(ACTIVE_OPERATION_STATUSES))
            .limit(1)
            .scalar_subquery()
        )
        last_started = (
            select(func.max(ops.id)).where(*of_release, ops.started_at.is_not(None))
        ).scalar_subquery()
        columns = [
            releases.c.version.label("release_version"),
            releases.c.last_operation_id.label("release_last_operation_id"),
            releases.c.descriptor_operation_id.label("release_descriptor_operation_id"),
            active.label("active_operation_id"),
            last_started.label("last_started_operation_id"),
            *components.c,
        ]
        query = release_rows(columns, deployment_unit_id, environment, members_only=False)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return ReleaseState(deployment_unit_id, environment)
        first = rows[0]
        present = [row for row in rows if row.component_id is not None]
        return ReleaseState(
            deployment_unit_id,
            environment,
            version=first.release_version,
            last_operation_id=first.release_last_operation_id,
            active_operation_id=first.active_operation_id,
            last_started_operation_id=first.last_started_operation_id,
            components={state.component_id: state for state in records(ComponentState, present)},
            descriptor_operation_id=first.release_descriptor_operation_id,
        )

    async def submit(
        self, new: NewOperation, *, based_on: ReleaseState | None = None
    ) -> OperationView:
        """Store the operation; return it as stored.

        Raises ``OperationActiveError`` if an operation is active there, and
        ``ReleaseChangedError`` if the release is no longer ``based_on`` (plan again).
        """
        unit_id, environment = new.header.deployment_unit_id, new.header.environment

        def work(conn: Connection) -> None:
            current = _lock_release(conn, unit_id, environment, lock=not self._db.is_sqlite)
            _refuse_if_active(conn, unit_id, environment)
            last = current.last_operation_id if current is not None else None
            if based_on is not None and last != based_on.last_operation_id:
                raise ReleaseChangedError(
                    f"the release of {unit_id!r} in {environment!r} changed while the request "
                    "was planned"
                )
            self._insert(conn, new, release_status=current.status if current else None)

        for attempt in (1, 2):
            try:
                await self._db.transaction(work)
                return new.view()
            except IntegrityError:
                # Another replica inserted an active operation after our check: name it. If
                # it has already ended, the way is clear: try once more.
                await self._db.transaction(
                    lambda conn: _refuse_if_active(conn, unit_id, environment)
                )
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert(
        self, conn: Connection, new: NewOperation, *, release_status: ReleaseStatus | None
    ) -> None:
        header = new.header
        now = header.created_at
        _insert_operation(
            conn,
            header,
            OperationStatus.PENDING,
            release_status=release_status,
            requested_components=new.requested_components,
            retry_of=new.retry_of,
            warnings=new.warnings,
        )
        if new.descriptor_json is not None:
            conn.execute(
                insert(operation_documents).values(
                    operation_id=header.id, descriptor=new.descriptor_json
                )
            )
        _INSERT_TASKS.execute(
            conn,
            [
                {
                    **values(step, _STEP_FIELDS),
                    "operation_id": header.id,
                    "position": position,
                    "status": TaskStatus.WAITING,
                    "attempts": 0,
                }
                for position, step in enumerate(new.plan.steps)
            ],
        )
        self._upsert_release(conn, new)
        if new.components:
            self._insert_components(conn, new)
        insert_events(
            conn,
            [
                event_values(
                    header.id,
                    Event(None, None, OperationStatus.PENDING, now, new.detail),
                    header.requested_by,
                )
            ],
        )

    def _insert_for(self, table: Any) -> Any:
        dialect = sqlite if self._db.is_sqlite else postgresql
        return dialect.insert(table)

    def _upsert_release(self, conn: Connection, new: NewOperation) -> None:
        header = new.header
        changes = {
            "status": ReleaseStatus.IN_PROGRESS,
            "last_operation_id": header.id,
            "updated_at": header.created_at,
        }
        statement = self._insert_for(releases).values(
            deployment_unit_id=header.deployment_unit_id,
            environment=header.environment,
            created_at=header.created_at,
            **changes,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[releases.c.deployment_unit_id, releases.c.environment],
                set_=changes,
            )
        )

    def _insert_components(self, conn: Connection, new: NewOperation) -> None:
        """Rows for the descriptor's components not seen before (NOT_DEPLOYED, not yet
        members): membership changes only when the deploy runs, so a deploy cancelled while
        pending leaves the release as it was."""
        _INSERT_NEW_COMPONENTS[sqlite if self._db.is_sqlite else postgresql].execute(
            conn,
            [
                {
                    **values(state, _COMPONENT_FIELDS),
                    "deployment_unit_id": new.header.deployment_unit_id,
                    "environment": new.header.environment,
                    "member": False,
                    "updated_at": new.header.created_at,
                }
                for state in new.components
            ],
        )

    async def override(
        self, header: OperationHeader, component_id: str, status: ComponentStatus
    ) -> None:
        """Record an OVERRIDE: the operation, already SUCCEEDED (no task: no adapter is called),
        the component marked ``status`` with an event saying who and why, and the release's
        status derived again, all in one transaction.

        Raises ``NotFoundError`` (no such release or component), ``OperationActiveError``, or
        ``ConflictError`` when the component may not be overridden (``may_override``).
        """
        unit_id, environment, now = header.deployment_unit_id, header.environment, header.created_at

        def work(conn: Connection) -> None:
            current = _lock_release(conn, unit_id, environment, lock=not self._db.is_sqlite)
            _refuse_if_active(conn, unit_id, environment)
            key = (
                components.c.deployment_unit_id == unit_id,
                components.c.environment == environment,
                components.c.component_id == component_id,
            )
            was = conn.execute(select(components.c.status).where(*key)).scalar_one_or_none()
            if current is None or was is None:
                raise NotFoundError(
                    f"component {component_id!r} of {unit_id!r} is not known in {environment!r}"
                )
            if not may_override(was, status):
                raise ConflictError(
                    f"component {component_id!r} is {was}: only a CORRUPT component may be "
                    "marked by hand (DEPLOYED or NOT_DEPLOYED)"
                )
            self._insert_override(conn, header, component_id, release_status=current.status)
            changes: dict[str, Any] = {"status": status, "updated_at": now}
            if status is ComponentStatus.NOT_DEPLOYED:
                changes.update(version=None, refs=None)
            conn.execute(update(components).where(*key).values(changes))
            said = {"reason": header.reason}
            marked = {"override": {"componentId": component_id, "from": was, "to": status}}
            who = header.requested_by
            insert_events(
                conn,
                [
                    event_values(header.id, Event(component_id, was, status, now, said), who),
                    event_values(
                        header.id,
                        Event(None, None, OperationStatus.SUCCEEDED, now, marked | said),
                        who,
                    ),
                ],
            )
            settle_release(conn, header, OperationStatus.SUCCEEDED, now)

        await self._db.transaction(work)

    def _insert_override(
        self,
        conn: Connection,
        header: OperationHeader,
        component_id: str,
        *,
        release_status: ReleaseStatus,
    ) -> None:
        now = header.created_at
        _insert_operation(
            conn,
            header,
            OperationStatus.SUCCEEDED,
            release_status=release_status,
            requested_components=(component_id,),
            started_at=now,
            finished_at=now,
        )

    async def request_cancel(
        self, operation_id: str, *, now: datetime, principal: str | None = None
    ) -> OperationStatus:
        """Cancel a pending operation at once, or flag a running one for its owner; the
        request is an event of the operation, on ``principal``'s behalf.

        Returns the operation's status after the request. Raises ``NotFoundError`` or
        ``OperationFinishedError``.
        """

        def work(conn: Connection) -> OperationStatus:
            query = select(operations).where(operations.c.id == operation_id)
            if not self._db.is_sqlite:
                query = query.with_for_update()
            row = conn.execute(query).one_or_none()
            if row is None:
                raise NotFoundError(f"operation {operation_id} does not exist")
            if not row.status.is_active:
                raise OperationFinishedError(f"operation {operation_id} already ended {row.status}")
            if row.status is OperationStatus.PENDING:
                return _cancel_pending(conn, record(OperationHeader, row), now, principal)
            conn.execute(
                update(operations)
                .where(operations.c.id == operation_id)
                .values(cancel_requested=True, updated_at=now)
            )
            asked = Event(None, row.status, row.status, now, {"cancelRequested": True})
            insert_events(conn, [event_values(operation_id, asked, principal)])
            return OperationStatus.RUNNING

        return await self._db.transaction(work)


def _lock_release(
    conn: Connection, deployment_unit_id: str, environment: str, *, lock: bool
) -> Row[Any, Any] | None:
    """The release's last operation and status (None if there is no release yet), its row
    locked until commit on PostgreSQL so that submissions for one release are serialised
    (SQLite's BEGIN IMMEDIATE already serialises every write)."""
    query = select(releases.c.last_operation_id, releases.c.status).where(
        releases.c.deployment_unit_id == deployment_unit_id,
        releases.c.environment == environment,
    )
    row: Row[Any, Any] | None = conn.execute(
        query.with_for_update() if lock else query
    ).one_or_none()
    return row


def _insert_operation(
    conn: Connection,
    header: OperationHeader,
    status: OperationStatus,
    *,
    release_status: ReleaseStatus | None,
    **columns: Any,
) -> None:
    """A new operation's row: its header and ``status``, not cancelled, never claimed
    (fence 0), with the release's status before it and any other ``columns``."""
    conn.execute(
        insert(operations).values(
            **values(header, _HEADER_FIELDS),
            status=status,
            release_status_before=release_status,
            cancel_requested=False,
            fencing=0,
            updated_at=header.created_at,
            **columns,
        )
    )


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


def _cancel_pending(
    conn: Connection, header: OperationHeader, now: datetime, principal: str | None
) -> OperationStatus:
    """Nothing of a pending operation has run: every task ends CANCELLED (no adapter was
    called, so every component keeps its status) and so does the operation."""
    interruption = Interruption.CANCEL
    task_ids = (
        conn.execute(select(tasks.c.component_id).where(tasks.c.operation_id == header.id))
        .scalars()
        .all()
    )
    outcome = operation_outcome([interruption.task_status], interruption=interruption)
    conn.execute(
        update(tasks)
        .where(tasks.c.operation_id == header.id)
        .values(status=interruption.task_status, finished_at=now)
    )
    conn.execute(
        update(operations)
        .where(operations.c.id == header.id)
        .values(status=outcome, finished_at=now, updated_at=now)
    )
    insert_events(
        conn,
        [
            *(
                event_values(
                    header.id,
                    Event(cid, TaskStatus.WAITING, interruption.task_status, now),
                    principal,
                )
                for cid in task_ids
            ),
            event_values(header.id, Event(None, OperationStatus.PENDING, outcome, now), principal),
        ],
    )
    settle_release(conn, header, outcome, now, ran=False)
    return outcome
