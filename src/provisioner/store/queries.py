"""Reads for the API: operations, their events, releases and components.

Adapter ``privateInfo`` is stored and sent back to adapters, but never read into a view.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, and_, or_, select, tuple_

from provisioner.domain.status import ComponentStatus
from provisioner.errors import BadRequestError
from provisioner.store.database import Database
from provisioner.store.models import components, events, operations, releases, tasks
from provisioner.store.operations import decode_document
from provisioner.store.views import (
    ComponentView,
    EventView,
    LastOperationView,
    OperationView,
    Page,
    ReleaseSummary,
    ReleaseView,
    TaskView,
)

_RELEASE_KEYS = ("deployment_unit_id", "environment")
_RELEASE_COLUMNS = [
    *(releases.c[name] for name in _RELEASE_KEYS),
    *(
        releases.c[name].label(f"release_{name}")
        for name in (
            "status",
            "version",
            "descriptor_operation_id",
            "last_operation_id",
            "created_at",
            "updated_at",
        )
    ),
]
_TASK_COLUMNS = [column for column in tasks.c if column.name != "private_info"]
_OPERATION_COLUMNS = [column for column in operations.c if column.name != "descriptor"]
_COMPONENT_COLUMNS = [
    column for column in components.c if column.name not in ("private_info", *_RELEASE_KEYS)
]


class Queries:
    """Read-only access for the API and the CLI."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def operation(self, operation_id: str) -> OperationView | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(*_OPERATION_COLUMNS).where(operations.c.id == operation_id)
                )
            ).one_or_none()
            if row is None:
                return None
            task_rows = (
                await conn.execute(
                    select(*_TASK_COLUMNS)
                    .where(tasks.c.operation_id == operation_id)
                    .order_by(tasks.c.position)
                )
            ).all()
        return _operation_view(row, [_task_view(task) for task in task_rows])

    async def operations(
        self,
        *,
        deployment_unit_id: str | None,
        environment: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[OperationView]:
        """Newest first; ``cursor`` is the id of the last operation of the previous page."""
        query = select(*_OPERATION_COLUMNS).order_by(operations.c.id.desc()).limit(limit + 1)
        if deployment_unit_id is not None:
            query = query.where(operations.c.deployment_unit_id == deployment_unit_id)
        if environment is not None:
            query = query.where(operations.c.environment == environment)
        if status is not None:
            query = query.where(operations.c.status == status)
        if cursor is not None:
            query = query.where(operations.c.id < _decode_cursor(cursor)[0])
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        items = [_operation_view(row, []) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1].id) if more else None)

    async def events(self, operation_id: str, *, after: int, limit: int) -> list[EventView]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(events)
                    .where(events.c.operation_id == operation_id, events.c.id > after)
                    .order_by(events.c.id)
                    .limit(limit)
                )
            ).all()
        return [
            EventView(
                id=row.id,
                operation_id=row.operation_id,
                component_id=row.component_id,
                old_status=row.old_status,
                new_status=row.new_status,
                at=row.at,
                detail=row.detail,
            )
            for row in rows
        ]

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView | None:
        # One statement, so one consistent snapshot in one round trip: the release row repeated
        # on each of its members' rows (or alone, when it has none).
        members = and_(
            components.c.deployment_unit_id == releases.c.deployment_unit_id,
            components.c.environment == releases.c.environment,
            or_(components.c.member, components.c.status != ComponentStatus.NOT_DEPLOYED),
        )
        query = (
            select(*_RELEASE_COLUMNS, *_COMPONENT_COLUMNS)
            .select_from(releases.outerjoin(components, members))
            .where(
                releases.c.deployment_unit_id == deployment_unit_id,
                releases.c.environment == environment,
            )
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        row = rows[0]
        views = [_component_view(item) for item in rows if item.component_id is not None]
        system = next((view for view in views if view.is_system), None)
        return ReleaseView(
            deployment_unit_id=row.deployment_unit_id,
            environment=row.environment,
            status=row.release_status,
            version=row.release_version,
            public_info=system.public_info if system else None,
            components=[view for view in views if not view.is_system],
            last_operation_id=row.release_last_operation_id,
            descriptor_operation_id=row.release_descriptor_operation_id,
            created_at=row.release_created_at,
            updated_at=row.release_updated_at,
        )

    async def releases(
        self, *, environment: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[ReleaseSummary]:
        query = (
            select(releases)
            .order_by(releases.c.deployment_unit_id, releases.c.environment)
            .limit(limit + 1)
        )
        if environment is not None:
            query = query.where(releases.c.environment == environment)
        if status is not None:
            query = query.where(releases.c.status == status)
        if cursor is not None:
            unit, env = _decode_cursor(cursor, parts=2)
            query = query.where(
                tuple_(releases.c.deployment_unit_id, releases.c.environment) > (unit, env)
            )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        items = [
            ReleaseSummary(
                deployment_unit_id=row.deployment_unit_id,
                environment=row.environment,
                status=row.status,
                version=row.version,
                last_operation_id=row.last_operation_id,
                updated_at=row.updated_at,
            )
            for row in rows[:limit]
        ]
        more = len(rows) > limit
        last = items[-1] if items else None
        return Page(
            items,
            _encode_cursor(last.deployment_unit_id, last.environment) if more and last else None,
        )

    async def document(self, operation_id: str) -> Mapping[str, Any] | None:
        """The unit descriptor an operation deployed."""
        async with self._db.read() as conn:
            text = (
                await conn.execute(
                    select(operations.c.descriptor).where(operations.c.id == operation_id)
                )
            ).scalar_one_or_none()
        return None if text is None else await decode_document(text)


def _operation_view(row: Row[Any], task_views: list[TaskView]) -> OperationView:
    return OperationView(
        id=row.id,
        type=row.type,
        deployment_unit_id=row.deployment_unit_id,
        environment=row.environment,
        version=row.version,
        status=row.status,
        remove_data=row.remove_data,
        requested_components=row.requested_components,
        retry_of=row.retry_of,
        cancel_requested=row.cancel_requested,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        tasks=task_views,
    )


def _task_view(row: Row[Any]) -> TaskView:
    return TaskView(
        component_id=row.component_id,
        action=row.action,
        status=row.status,
        depends_on=list(row.depends_on or ()),
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
        public_info=row.public_info,
        logs=row.logs,
        error=row.error,
        is_system=row.is_system,
        infrastructure_template_id=row.infrastructure_template_id,
    )


def _component_view(row: Row[Any]) -> ComponentView:
    last = None
    if row.last_operation_id and row.last_operation_type and row.last_task_status:
        last = LastOperationView(
            type=row.last_operation_type,
            status=row.last_task_status,
            operation_id=row.last_operation_id,
            finished_at=row.last_finished_at,
        )
    return ComponentView(
        component_id=row.component_id,
        is_system=row.is_system,
        status=row.status,
        version=row.version,
        infrastructure_template_id=row.infrastructure_template_id,
        depends_on=list(row.depends_on or ()),
        public_info=row.public_info,
        last_operation=last,
        updated_at=row.updated_at,
    )


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *, parts: int = 1) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        raise BadRequestError("invalid cursor") from None
    if (
        not isinstance(value, list)
        or len(value) != parts
        or not all(isinstance(part, str) for part in value)
    ):
        raise BadRequestError("invalid cursor")
    return value
