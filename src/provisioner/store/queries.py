"""Reads for the API: operations, their events, releases and components.

Adapter ``privateInfo`` is stored and sent back to adapters, but never read into a view.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Integer, Select, and_, bindparam, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioner.domain.status import (
    ComponentStatus,
    DeliveryStatus,
    OperationStatus,
    ReleaseStatus,
)
from provisioner.engine.ports import TaskState
from provisioner.errors import BadRequestError
from provisioner.store.database import Database
from provisioner.store.models import (
    components,
    deliveries,
    events,
    operation_documents,
    operations,
    publications,
    releases,
    tasks,
)
from provisioner.store.operations import decode_document
from provisioner.store.publications import FACT_COLUMNS
from provisioner.store.records import records
from provisioner.store.views import (
    ComponentView,
    DeliveryView,
    EventView,
    OperationView,
    Page,
    PublicationView,
    ReleaseView,
)

_NEVER_SHOWN = frozenset({"private_info", "token"})
_TASK_COLUMNS = [column for column in tasks.c if column.name not in _NEVER_SHOWN]
_OPERATION_COLUMNS = [column for column in operations.c if column.name not in _NEVER_SHOWN]
_RELEASE_KEYS = ("deployment_unit_id", "environment")
# The release's own columns, named apart from its components' in the joined read.
_RELEASE_VALUES = [column.name for column in releases.c if column.name not in _RELEASE_KEYS]
_RELEASE_COLUMNS = [
    *(releases.c[name] for name in _RELEASE_KEYS),
    *(releases.c[name].label(f"release_{name}") for name in _RELEASE_VALUES),
]
_COMPONENT_COLUMNS = [
    column for column in components.c if column.name not in (*_NEVER_SHOWN, *_RELEASE_KEYS)
]
# The reads' bare statements, built once: coercing two dozen columns again on every request
# cost more CPU than running the statement (each read refines a copy).
_SELECT_RELEASES = select(releases)


def release_rows(
    columns: Sequence[Any], deployment_unit_id: Any, environment: Any, *, members_only: bool
) -> Select[Any]:
    """One statement (so one consistent snapshot, in one round trip) for a release and its
    components: the release's columns repeated on each component's row, or alone when it has
    none. ``members_only``: the components that make up the release (those of its last
    deployed descriptor, and any still deployed from an earlier one)."""
    joined = and_(
        components.c.deployment_unit_id == releases.c.deployment_unit_id,
        components.c.environment == releases.c.environment,
    )
    if members_only:
        joined = and_(
            joined,
            or_(components.c.member, components.c.status != ComponentStatus.NOT_DEPLOYED),
        )
    return (
        select(*columns)
        .select_from(releases.outerjoin(components, joined))
        .where(
            releases.c.deployment_unit_id == deployment_unit_id,
            releases.c.environment == environment,
        )
    )


# The most frequent reads (clients poll them), built once: building a statement and its cache
# key cost more than a tenth of a request.
_RELEASE_READ = release_rows(
    [*_RELEASE_COLUMNS, *_COMPONENT_COLUMNS],
    bindparam("unit", type_=releases.c.deployment_unit_id.type),
    bindparam("environment", type_=releases.c.environment.type),
    members_only=True,
)

_OPERATION_ID = bindparam("operation_id", type_=operations.c.id.type)
_OPERATION_READ = select(*_OPERATION_COLUMNS).where(operations.c.id == _OPERATION_ID)
_TASKS_READ = (
    select(*_TASK_COLUMNS).where(tasks.c.operation_id == _OPERATION_ID).order_by(tasks.c.position)
)

# An operation's events after a sequence number (what every event stream polls).
_EVENTS_READ = (
    select(events)
    .where(
        events.c.operation_id == _OPERATION_ID,
        events.c.id > bindparam("after", type_=events.c.id.type),
    )
    .order_by(events.c.id)
    .limit(bindparam("limit", type_=Integer()))
)


async def _events_after(
    conn: AsyncConnection, operation_id: str, after: int, limit: int
) -> list[EventView]:
    page = {"operation_id": operation_id, "after": after, "limit": limit}
    return records(EventView, (await conn.execute(_EVENTS_READ, page)).all())


@functools.cache
def _operations_read(filters: frozenset[str]) -> Select[Any]:
    """The operation listing newest first, with the filters named (at most 16 statements)."""
    ops = operations.c
    query = select(*_OPERATION_COLUMNS).order_by(ops.id.desc())
    query = query.limit(bindparam("limit", type_=Integer()))
    for name in ("deployment_unit_id", "environment", "status"):
        if name in filters:
            query = query.where(ops[name] == bindparam(name, type_=ops[name].type))
    if "before" in filters:
        query = query.where(ops.id < bindparam("before", type_=ops.id.type))
    return query


class Queries:
    """Read-only access for the API and the CLI."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def operation(self, operation_id: str) -> OperationView | None:
        parameters = {"operation_id": operation_id}
        async with self._db.read() as conn:
            rows = (await conn.execute(_OPERATION_READ, parameters)).all()
            if not rows:
                return None
            task_rows = (await conn.execute(_TASKS_READ, parameters)).all()
        (view,) = records(OperationView, rows, tasks=tuple(records(TaskState, task_rows)))
        return view

    async def operations(
        self,
        *,
        deployment_unit_id: str | None,
        environment: str | None,
        status: OperationStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[OperationView]:
        """Newest first; ``cursor`` is the id of the last operation of the previous page."""
        parameters: dict[str, Any] = {
            "deployment_unit_id": deployment_unit_id,
            "environment": environment,
            "status": status,
            "before": None if cursor is None else _decode_cursor(cursor)[0],
        }
        query = _operations_read(frozenset(k for k, v in parameters.items() if v is not None))
        parameters["limit"] = limit + 1
        async with self._db.read() as conn:
            rows = (await conn.execute(query, parameters)).all()
        items = records(OperationView, rows[:limit])
        more = len(rows) > limit
        return Page(items, _encode_cursor(items[-1].id) if more else None)

    async def events(self, operation_id: str, *, after: int, limit: int) -> list[EventView]:
        async with self._db.read() as conn:
            return await _events_after(conn, operation_id, after, limit)

    async def status_and_events(
        self, operation_id: str, *, after: int, limit: int
    ) -> tuple[OperationStatus | None, list[EventView]]:
        """The operation's status (None: no such operation), then its events after ``after``:
        read in that order, so that when the status is final every event is in the list (an
        operation's last event is written with its final status)."""
        async with self._db.read() as conn:
            status = (
                await conn.execute(
                    select(operations.c.status).where(operations.c.id == operation_id)
                )
            ).scalar_one_or_none()
            if status is None:
                return None, []
            return status, await _events_after(conn, operation_id, after, limit)

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView | None:
        parameters = {"unit": deployment_unit_id, "environment": environment}
        async with self._db.read() as conn:
            rows = (await conn.execute(_RELEASE_READ, parameters)).all()
        if not rows:
            return None
        views = records(ComponentView, [row for row in rows if row.component_id is not None])
        system = next((view for view in views if view.is_system), None)
        release = rows[0]._mapping
        return ReleaseView(
            **{name: release[name] for name in _RELEASE_KEYS},
            **{name: release[f"release_{name}"] for name in _RELEASE_VALUES},
            public_info=system.public_info if system else None,
            components=tuple(view for view in views if not view.is_system),
        )

    async def releases(
        self,
        *,
        environment: str | None,
        status: ReleaseStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[ReleaseView]:
        query = _SELECT_RELEASES.order_by(
            releases.c.deployment_unit_id, releases.c.environment
        ).limit(limit + 1)
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
        items = records(ReleaseView, rows[:limit])
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
                    select(operation_documents.c.descriptor).where(
                        operation_documents.c.operation_id == operation_id
                    )
                )
            ).scalar_one_or_none()
        return None if text is None else await decode_document(text)

    async def publications(
        self, deployment_unit_id: str, environment: str, *, limit: int, cursor: str | None
    ) -> Page[PublicationView]:
        """A release's Market Plane events, newest first, each with its deliveries;
        ``cursor`` is the sequence of the last event of the previous page."""
        query = (
            select(*FACT_COLUMNS)
            .where(
                publications.c.deployment_unit_id == deployment_unit_id,
                publications.c.environment == environment,
            )
            .order_by(publications.c.id.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            (after,) = _decode_cursor(cursor)
            if not after.isdigit():
                raise BadRequestError("invalid cursor")
            query = query.where(publications.c.id < int(after))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
            ids = [row.publication_id for row in rows[:limit]]
            delivery_rows = (
                await conn.execute(
                    select(deliveries)
                    .where(deliveries.c.publication_id.in_(ids))
                    .order_by(deliveries.c.publication_id, deliveries.c.marketplace)
                )
            ).all()
        of: dict[int, list[DeliveryView]] = {}
        for view in records(DeliveryView, delivery_rows):
            shown = view
            if view.status is not DeliveryStatus.PENDING:
                shown = replace(view, next_attempt_at=None)
            of.setdefault(view.publication_id, []).append(shown)
        items = [
            PublicationView(**row._asdict(), deliveries=tuple(of.get(row.publication_id, ())))
            for row in rows[:limit]
        ]
        more = len(rows) > limit
        return Page(items, _encode_cursor(str(items[-1].publication_id)) if more else None)


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
