"""Delivering the outbox: claiming due deliveries, recording their outcomes, the publication
timeout.

A delivery is claimed like an operation: in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas claiming at once take different rows; SQLite serialises every write),
with a lease, never across the HTTP call. Only the earliest undelivered event of a release is
claimable for a Market Plane, so a later event is never delivered before an earlier one. The
outcome is recorded only by the claim that made the attempt (``attempts`` fences it), and the
release's status is derived again in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, exists, or_, select, tuple_, update

from provisioner.domain.publication import PublicationEvent
from provisioner.domain.status import DeliveryStatus
from provisioner.engine.ports import Delivery, DeliveryOutcome, PublicationRecord
from provisioner.store.database import Database
from provisioner.store.models import (
    deliveries,
    operation_documents,
    publications,
    published_components,
    tasks,
)
from provisioner.store.operations import decode_document, refresh_release

_PENDING = DeliveryStatus.PENDING
# The columns of ``PublicationFacts``, by its names.
FACT_COLUMNS = [
    publications.c.id.label("publication_id"),
    *(column for column in publications.c if column.name not in ("id", "detail")),
]
_DELIVERY_COLUMNS = [
    deliveries.c.publication_id,
    deliveries.c.marketplace,
    deliveries.c.deployment_unit_id,
    deliveries.c.environment,
    deliveries.c.attempts,
    deliveries.c.created_at,
]


def _claimable(now: datetime, replica_id: str, owner: str) -> Any:
    """Due, not held by a live claim (a previous process of this replica holds none: it is
    gone), and the earliest undelivered event of its release for its Market Plane."""
    d = deliveries.c
    earlier = deliveries.alias("earlier")
    return and_(
        d.status == _PENDING,
        d.next_attempt_at <= now,
        or_(
            d.claim_expires_at.is_(None),
            d.claim_expires_at < now,
            and_(d.claimed_replica == replica_id, d.claimed_by != owner),
        ),
        ~exists().where(
            earlier.c.deployment_unit_id == d.deployment_unit_id,
            earlier.c.environment == d.environment,
            earlier.c.marketplace == d.marketplace,
            earlier.c.status == _PENDING,
            earlier.c.publication_id < d.publication_id,
        ),
    )


class SqlPublicationStore:
    """``PublicationStore`` on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def due(
        self, *, owner: str, replica_id: str, marketplaces: Sequence[str], now: datetime
    ) -> bool:
        if not marketplaces:
            return False
        query = (
            select(deliveries.c.publication_id)
            .where(
                deliveries.c.marketplace.in_(list(marketplaces)),
                _claimable(now, replica_id, owner),
            )
            .limit(1)
        )
        async with self._db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def claim_deliveries(
        self,
        *,
        owner: str,
        replica_id: str,
        marketplaces: Sequence[str],
        limit: int,
        lease_seconds: float,
        now: datetime,
    ) -> list[Delivery]:
        if not marketplaces:
            return []

        def work(conn: Connection) -> list[Delivery]:
            query = (
                select(*_DELIVERY_COLUMNS)
                .where(
                    deliveries.c.marketplace.in_(list(marketplaces)),
                    _claimable(now, replica_id, owner),
                )
                .order_by(deliveries.c.publication_id, deliveries.c.marketplace)
                .limit(limit)
            )
            if not self._db.is_sqlite:
                query = query.with_for_update(of=deliveries, skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                return []
            keys = [(row.publication_id, row.marketplace) for row in rows]
            conn.execute(
                update(deliveries)
                .where(tuple_(deliveries.c.publication_id, deliveries.c.marketplace).in_(keys))
                .values(
                    attempts=deliveries.c.attempts + 1,
                    claimed_by=owner,
                    claimed_replica=replica_id,
                    claim_expires_at=now + timedelta(seconds=lease_seconds),
                    last_attempt_at=now,
                )
            )
            return [
                Delivery(
                    publication_id=row.publication_id,
                    marketplace=row.marketplace,
                    deployment_unit_id=row.deployment_unit_id,
                    environment=row.environment,
                    attempts=row.attempts + 1,
                    created_at=row.created_at,
                )
                for row in rows
            ]

        return await self._db.transaction(work)

    async def publication(self, publication_id: int) -> PublicationRecord | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(*FACT_COLUMNS, publications.c.detail).where(
                        publications.c.id == publication_id
                    )
                )
            ).one_or_none()
            if row is None:
                return None
            facts = row._asdict()
            if row.event is PublicationEvent.DEPLOYED:
                text = (
                    await conn.execute(
                        select(operation_documents.c.descriptor).where(
                            operation_documents.c.operation_id == row.operation_id
                        )
                    )
                ).scalar_one_or_none()
                provisioned = (
                    await conn.execute(
                        select(tasks.c.component_id, tasks.c.public_info).where(
                            tasks.c.operation_id == row.operation_id
                        )
                    )
                ).all()
                others = (
                    await conn.execute(
                        select(
                            published_components.c.component_id,
                            published_components.c.public_info,
                        ).where(published_components.c.publication_id == publication_id)
                    )
                ).all()
                document = None if text is None else await decode_document(text)
                return PublicationRecord(
                    **facts,
                    document=document,
                    public_info={
                        member.component_id: member.public_info
                        for member in (*provisioned, *others)
                    },
                    size=len(text or ""),
                )
            if row.event is PublicationEvent.UNDEPLOYED:
                undeployed = (
                    await conn.execute(
                        select(tasks.c.component_id)
                        .where(tasks.c.operation_id == row.operation_id)
                        .order_by(tasks.c.position)
                    )
                ).scalars()
                ids = list(undeployed)
                unit_id = row.deployment_unit_id
                return PublicationRecord(
                    **facts,
                    components=tuple(cid for cid in ids if cid != unit_id),
                    whole_unit=unit_id in ids,
                )
        return PublicationRecord(**facts)

    async def record_delivery(
        self,
        delivery: Delivery,
        *,
        owner: str,
        outcome: DeliveryOutcome,
        now: datetime,
        retry_at: datetime,
    ) -> bool:
        changes: dict[str, Any] = {
            "claimed_by": None,
            "claimed_replica": None,
            "claim_expires_at": None,
            "last_status_code": outcome.status_code,
        }
        if outcome.acknowledged:
            changes.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
        else:
            changes.update(next_attempt_at=retry_at, last_error=outcome.error)

        def work(conn: Connection) -> bool:
            recorded = conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.publication_id == delivery.publication_id,
                    deliveries.c.marketplace == delivery.marketplace,
                    deliveries.c.status == _PENDING,
                    deliveries.c.claimed_by == owner,
                    deliveries.c.attempts == delivery.attempts,
                )
                .values(changes)
                .returning(deliveries.c.publication_id)
            ).first()
            if recorded is None:
                return False
            refresh_release(conn, delivery.deployment_unit_id, delivery.environment, now)
            return True

        return await self._db.transaction(work)

    async def mark_overdue(self, *, cutoff: datetime, now: datetime) -> int:
        late = and_(
            deliveries.c.status == _PENDING,
            deliveries.c.overdue.is_(False),
            deliveries.c.created_at < cutoff,
        )
        return await self._change_each_release(late, {"overdue": True}, now)

    async def drop_unconfigured(self, *, marketplaces: Sequence[str], now: datetime) -> int:
        """Give up the pending deliveries to Market Planes no longer in the registry (they
        would wait, and hold their releases back, forever); how many were dropped."""
        gone = and_(
            deliveries.c.status == _PENDING, deliveries.c.marketplace.not_in(list(marketplaces))
        )
        dropped = {
            "status": DeliveryStatus.DROPPED,
            "claimed_by": None,
            "claimed_replica": None,
            "claim_expires_at": None,
            "last_error": "its Market Plane is no longer configured: given up",
        }
        return await self._change_each_release(gone, dropped, now)

    async def _change_each_release(self, where: Any, changes: dict[str, Any], now: datetime) -> int:
        """Apply ``changes`` to the deliveries ``where`` selects and derive their releases
        again; how many deliveries changed."""
        async with self._db.read() as conn:
            found = await conn.execute(
                select(deliveries.c.deployment_unit_id, deliveries.c.environment)
                .where(where)
                .distinct()
            )
            releases = found.all()
        changed = 0
        # One release per transaction: it holds one release row at a time, as an operation's
        # end and an acknowledgement do, so none of them can wait for another in a cycle.
        for unit_id, environment in releases:
            changed += await self._db.transaction(
                partial(
                    self._change_release,
                    where=where,
                    changes=changes,
                    unit_id=unit_id,
                    environment=environment,
                    now=now,
                )
            )
        return changed

    def _change_release(
        self,
        conn: Connection,
        *,
        where: Any,
        changes: dict[str, Any],
        unit_id: str,
        environment: str,
        now: datetime,
    ) -> int:
        query = select(deliveries.c.publication_id, deliveries.c.marketplace).where(
            where,
            deliveries.c.deployment_unit_id == unit_id,
            deliveries.c.environment == environment,
        )
        if not self._db.is_sqlite:
            # Another replica sweeping at once takes the others; neither waits.
            query = query.with_for_update(skip_locked=True)
        keys = [(row.publication_id, row.marketplace) for row in conn.execute(query)]
        if not keys:
            return 0
        conn.execute(
            update(deliveries)
            .where(tuple_(deliveries.c.publication_id, deliveries.c.marketplace).in_(keys))
            .values(changes)
        )
        refresh_release(conn, unit_id, environment, now)
        return len(keys)

    async def release_claims(self, owner: str) -> None:
        await self._db.transaction(
            lambda conn: conn.execute(
                update(deliveries)
                .where(deliveries.c.claimed_by == owner, deliveries.c.status == _PENDING)
                .values(claimed_by=None, claimed_replica=None, claim_expires_at=None)
            )
        )
