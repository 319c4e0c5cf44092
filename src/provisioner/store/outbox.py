"""The outbox: release events written in the transaction of the change they announce.

``record_publication`` is called inside a store transaction (the one that records an operation's
end, for DEPLOYED, UNDEPLOYED and ACL_UPDATED); the event and one delivery per configured Market
Plane commit with that change or not at all, and the publisher delivers them later, at least
once. What the event says is fixed then: its own row, the operation's stored descriptor and
tasks, which do not change once it ended (a succeeded task holds the public info its component
got from it), and, for DEPLOYED, a copy of the public info of the members the operation did not
provision itself, made by the database (``INSERT ... SELECT``: nothing is decoded or encoded on
the engine's hot path, and a full deploy copies nothing). The payload is built from them when it
is delivered.

Call it before the release's status is derived (``settle_release``), or derive it again after
(``refresh_release``), so that the release shows IN_PROGRESS until the event is acknowledged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Connection, exists, insert, literal, select

from provisioner.domain.publication import PublicationEvent
from provisioner.domain.status import DeliveryStatus, Publication, PublicationState
from provisioner.engine.ports import JSON
from provisioner.store.models import (
    components,
    deliveries,
    operations,
    publications,
    published_components,
    tasks,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewPublication:
    """An event to publish about one release, caused by one operation."""

    event: PublicationEvent
    deployment_unit_id: str
    environment: str
    operation_id: str
    version: str | None
    occurred_at: datetime
    detail: JSON | None = None  # ACL_UPDATED: ``acl_detail(component_id, refs)``


def record_publication(
    conn: Connection, publication: NewPublication, marketplaces: Sequence[str]
) -> int | None:
    """Write ``publication`` and its deliveries to ``marketplaces`` in the caller's transaction;
    return its id (None, and nothing written, when no Market Plane is configured).

    For DEPLOYED, the public info of the release's members (the unit and the components of its
    last deployed descriptor) that the operation did not provision is copied as it is now.
    """
    if not marketplaces:
        return None
    publication_id: int = conn.execute(
        insert(publications)
        .values(
            event_id=str(uuid.uuid4()),
            event=publication.event,
            deployment_unit_id=publication.deployment_unit_id,
            environment=publication.environment,
            operation_id=publication.operation_id,
            version=publication.version,
            detail=publication.detail,
            occurred_at=publication.occurred_at,
        )
        .returning(publications.c.id)
    ).scalar_one()
    if publication.event is PublicationEvent.DEPLOYED:
        # What this operation provisioned has its public info in its own task rows; only the
        # other members' are copied, and there are none unless it deployed some components
        # (checked once, before the scan: a full deploy of thousands copies nothing).
        subset = exists().where(
            operations.c.id == publication.operation_id,
            operations.c.requested_components.is_not(None),
        )
        provisioned = select(tasks.c.component_id).where(
            tasks.c.operation_id == publication.operation_id
        )
        members = select(
            literal(publication_id, BigInteger()),
            components.c.component_id,
            components.c.public_info,
        ).where(
            components.c.deployment_unit_id == publication.deployment_unit_id,
            components.c.environment == publication.environment,
            components.c.member,
            subset,
            components.c.component_id.not_in(provisioned),
        )
        conn.execute(
            insert(published_components).from_select(
                ["publication_id", "component_id", "public_info"], members
            )
        )
    conn.execute(
        insert(deliveries),
        [
            {
                "publication_id": publication_id,
                "marketplace": name,
                "deployment_unit_id": publication.deployment_unit_id,
                "environment": publication.environment,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": publication.occurred_at,
                "overdue": False,
                "created_at": publication.occurred_at,
            }
            for name in dict.fromkeys(marketplaces)
        ],
    )
    return publication_id


def publication_state(conn: Connection, deployment_unit_id: str, environment: str) -> Publication:
    """Where the release's events stand: the first one not acknowledged (an overdue one first)
    names the Market Plane it waits for and the last error."""
    row = conn.execute(
        select(
            deliveries.c.marketplace,
            deliveries.c.overdue,
            deliveries.c.attempts,
            deliveries.c.last_error,
            publications.c.event,
            publications.c.operation_id,
        )
        .join(publications, publications.c.id == deliveries.c.publication_id)
        .where(
            deliveries.c.deployment_unit_id == deployment_unit_id,
            deliveries.c.environment == environment,
            deliveries.c.status == DeliveryStatus.PENDING,
        )
        .order_by(
            deliveries.c.overdue.desc(), deliveries.c.publication_id, deliveries.c.marketplace
        )
        .limit(1)
    ).one_or_none()
    if row is None:
        return Publication()
    event = f"the {row.event} event of operation {row.operation_id}"
    tried = f"{row.attempts} attempt(s)"
    if row.last_error:
        tried += f", last: {row.last_error}"
    if row.overdue:
        return Publication(
            PublicationState.OVERDUE,
            f"the Market Plane {row.marketplace!r} has not acknowledged {event} within the "
            f"publication timeout ({tried})",
        )
    detail = f"publishing {event} to the Market Plane {row.marketplace!r}"
    if row.attempts and row.last_error:
        detail += f" ({tried})"
    return Publication(PublicationState.DELIVERING, detail)
