"""What the whole database holds right now, for metrics: operations pending and running, how
long the oldest has waited, releases per status.

Two small queries, meant to be run every few seconds by one task per replica, not per scrape:
the active operations are found through the ``(status, id)`` index (there are few of them), and
the releases are counted per status (one row per unit and environment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from provisioner.domain.status import ACTIVE_OPERATION_STATUSES, OperationStatus, ReleaseStatus
from provisioner.store.database import Database
from provisioner.store.models import operations, releases


@dataclass(frozen=True, slots=True)
class ActiveOperations:
    """The operations of one active status: how many, and since when the oldest waits (its
    creation if PENDING, its first start if RUNNING)."""

    count: int = 0
    oldest_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    operations: dict[OperationStatus, ActiveOperations] = field(default_factory=dict)
    releases: dict[ReleaseStatus, int] = field(default_factory=dict)


async def read_activity(database: Database) -> Activity:
    """The counts, read in one connection."""
    ops = operations.c
    active = (
        select(ops.status, func.count(), func.min(ops.created_at), func.min(ops.started_at))
        .where(ops.status.in_(ACTIVE_OPERATION_STATUSES))
        .group_by(ops.status)
    )
    per_status = select(releases.c.status, func.count()).group_by(releases.c.status)
    async with database.read() as conn:
        active_rows = (await conn.execute(active)).all()
        release_rows = (await conn.execute(per_status)).all()
    found = {
        status: ActiveOperations(
            count, created if status is OperationStatus.PENDING else started or created
        )
        for status, count, created, started in active_rows
    }
    return Activity(
        operations={status: found.get(status, ActiveOperations()) for status in _ACTIVE},
        releases={row[0]: row[1] for row in release_rows},
    )


_ACTIVE = (OperationStatus.PENDING, OperationStatus.RUNNING)
