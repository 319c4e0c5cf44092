"""Market Plane events (``provisioner.domain.publication``) and the publisher's delivery rules
(``provisioner.engine.publisher``) over in-memory fakes of its ports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioner.domain.publication import (
    PublicationEvent,
    PublicationFacts,
    acl_updated_event,
    deployed_event,
    encode_event,
    event_after,
    public_descriptor,
    undeployed_event,
)
from provisioner.domain.status import OperationStatus, OperationType
from provisioner.engine.ports import (
    Delivery,
    DeliveryOutcome,
    MarketplaceEndpoint,
    PublicationRecord,
)
from provisioner.engine.publisher import Publisher, PublisherConfig, build_body, retry_delay
from tests.support import wait_until

T0 = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
FACTS = PublicationFacts(
    publication_id=7,
    event_id="e-1",
    event=PublicationEvent.DEPLOYED,
    deployment_unit_id="urn:dp:u:0",
    environment="production",
    version="1.2.0",
    operation_id="op-1",
    occurred_at=T0,
)
DOCUMENT: dict[str, Any] = {
    "id": "urn:dp:u:0",
    "version": "1.2.0",
    "info": {"privateInfo": {"key": "written-by-hand"}},
    "components": [
        {"id": "c1", "kind": "outputport", "specific": {"privateInfo": "x"}},
        {"id": "c2", "kind": "storage"},
        "not-a-mapping",
    ],
}


# --- events -------------------------------------------------------------------------------------


def test_a_deployed_event_carries_public_info_and_no_private_info() -> None:
    """Each member with public info gets ``info.publicInfo``; ``privateInfo`` is removed
    wherever it is, in the descriptor and in an adapter's public info alike."""
    event = deployed_event(
        FACTS,
        DOCUMENT,
        {
            "urn:dp:u:0": {"name": "unit"},
            "c1": {"table": "t", "privateInfo": {"password": "p"}},
            "c2": None,
        },
    )
    assert {key: event[key] for key in list(event)[:8]} == {
        "eventId": "e-1",
        "sequence": 7,
        "event": "DEPLOYED",
        "deploymentUnitId": "urn:dp:u:0",
        "environment": "production",
        "version": "1.2.0",
        "operationId": "op-1",
        "occurredAt": "2026-01-01T12:30:00Z",
    }
    descriptor = event["descriptor"]
    assert descriptor["info"] == {"publicInfo": {"name": "unit"}}
    assert descriptor["components"][0]["info"] == {"publicInfo": {"table": "t"}}
    assert "info" not in descriptor["components"][1]
    assert descriptor["components"][2] == "not-a-mapping"
    assert "privateInfo" not in json.dumps(event)
    assert "privateInfo" in json.dumps(DOCUMENT)  # the input is left as it was


def test_the_public_descriptor_is_also_what_the_release_read_shows() -> None:
    """A member without public info keeps what its descriptor says."""
    shown = public_descriptor({"id": "u", "components": [{"id": "c", "info": {"a": 1}}]}, {})
    assert shown == {"id": "u", "components": [{"id": "c", "info": {"a": 1}}]}


def test_undeployed_and_acl_updated_events() -> None:
    undeployed = undeployed_event(
        replace(FACTS, event=PublicationEvent.UNDEPLOYED), ["c1", "c2"], whole_unit=True
    )
    assert undeployed["event"] == "UNDEPLOYED"
    assert (undeployed["components"], undeployed["wholeUnit"]) == (["c1", "c2"], True)
    acl = acl_updated_event(replace(FACTS, event=PublicationEvent.ACL_UPDATED), "c1", ("u:a",))
    assert (acl["event"], acl["componentId"], acl["refs"]) == ("ACL_UPDATED", "c1", ["u:a"])


def test_an_event_is_encoded_to_the_same_bytes_every_time() -> None:
    """Compact UTF-8 JSON, text as written: the signature of every attempt is the same."""
    event = deployed_event(FACTS, {"id": "urn:dp:u:0", "name": "Ventes été"}, {})
    body = encode_event(event)
    assert body == encode_event(json.loads(body))
    assert "Ventes été".encode() in body
    assert b", " not in body


@pytest.mark.parametrize(
    ("operation", "outcome", "event"),
    [
        (OperationType.DEPLOY, OperationStatus.SUCCEEDED, PublicationEvent.DEPLOYED),
        (OperationType.UNDEPLOY, OperationStatus.SUCCEEDED, PublicationEvent.UNDEPLOYED),
        (OperationType.DEPLOY, OperationStatus.FAILED, None),
        (OperationType.DEPLOY, OperationStatus.CANCELLED, None),
        (OperationType.UNDEPLOY, OperationStatus.FAILED, None),
    ],
)
def test_only_success_is_published(
    operation: OperationType, outcome: OperationStatus, event: PublicationEvent | None
) -> None:
    assert event_after(operation, outcome) is event


@pytest.mark.parametrize(
    ("attempts", "jitter", "delay"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (4, 0.5, 6.0),
        (10, 1.0, 60.0),  # capped
        (10, 0.0, 30.0),
        (10_000, 1.0, 60.0),  # no overflow however long it fails
    ],
)
def test_retries_back_off_exponentially_with_jitter_up_to_a_cap(
    attempts: int, jitter: float, delay: float
) -> None:
    assert retry_delay(attempts, initial=1.0, maximum=60.0, jitter=jitter) == delay


# --- the publisher, over fakes of its ports -----------------------------------------------------


@dataclass
class FakeStore:
    """One DEPLOYED publication and its delivery to one Market Plane, in memory."""

    record: PublicationRecord | None
    pending: list[Delivery] = field(default_factory=list)
    outcomes: list[tuple[Delivery, DeliveryOutcome, datetime]] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)
    claims: int = 0

    async def due(self, **_: Any) -> bool:
        return bool(self.pending)

    async def claim_deliveries(self, *, limit: int, **_: Any) -> list[Delivery]:
        self.claims += 1
        taken, self.pending = self.pending[:limit], self.pending[limit:]
        return taken

    async def publication(self, publication_id: int) -> PublicationRecord | None:
        return self.record

    async def record_delivery(
        self,
        delivery: Delivery,
        *,
        owner: str,
        outcome: DeliveryOutcome,
        now: datetime,
        retry_at: datetime,
    ) -> bool:
        self.outcomes.append((delivery, outcome, retry_at))
        if not outcome.acknowledged:
            self.pending.append(replace(delivery, attempts=delivery.attempts + 1))
        return True

    async def mark_overdue(self, **_: Any) -> int:
        return 0

    async def release_claims(self, owner: str) -> None:
        self.handed_back.append(owner)


@dataclass
class FakeMarketplace:
    """Answers from a script: each call takes the next outcome (the last one repeats)."""

    script: Sequence[DeliveryOutcome]
    bodies: list[tuple[str, bytes, str]] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def deliver(
        self, endpoint: MarketplaceEndpoint, body: bytes, *, event_id: str, event: str
    ) -> DeliveryOutcome:
        self.bodies.append((endpoint.name, body, event_id))
        if self.hold is not None:
            await self.hold.wait()
        return self.script[min(len(self.bodies), len(self.script)) - 1]


RECORD = PublicationRecord(
    publication_id=7,
    event_id="e-1",
    event=PublicationEvent.DEPLOYED,
    deployment_unit_id="u",
    environment="dev",
    version="1",
    operation_id="op-1",
    occurred_at=T0,
    document={"id": "u", "components": [{"id": "c"}]},
    public_info={"c": {"table": "t"}},
)
DELIVERY = Delivery(
    publication_id=7,
    marketplace="catalog",
    deployment_unit_id="u",
    environment="dev",
    attempts=1,
    created_at=T0,
)


def publisher(store: FakeStore, marketplace: FakeMarketplace) -> Publisher:
    return Publisher(
        store=store,
        marketplaces=marketplace,
        endpoints=[MarketplaceEndpoint("catalog", "http://catalog")],
        config=PublisherConfig(
            replica_id="r",
            publication_retry_initial_seconds=0.01,
            publication_retry_max_seconds=0.02,
            claim_interval_seconds=30.0,  # only wake-ups and due retries make it look again
        ),
        clock=lambda: T0,
        jitter=lambda: 1.0,
    )


async def wait_for(condition: Any) -> None:
    async def met() -> bool:
        return bool(condition())

    await wait_until(met, interval=0.005)


async def test_a_failed_delivery_is_retried_with_backoff_until_acknowledged() -> None:
    """Each failure is recorded with its retry time; the retry comes when it is due (not at
    the next claim interval) with the same bytes; the acknowledgement is recorded."""
    store = FakeStore(RECORD, pending=[DELIVERY])
    failure = DeliveryOutcome(False, 503, "answered 503")
    marketplace = FakeMarketplace([failure, failure, DeliveryOutcome(True, 202)])
    running = publisher(store, marketplace)
    running.start()
    try:
        await wait_for(lambda: len(store.outcomes) == 3)
    finally:
        await running.stop(grace_seconds=1)
    assert [outcome.acknowledged for _, outcome, _ in store.outcomes] == [False, False, True]
    assert [retry_at - T0 for _, _, retry_at in store.outcomes[:2]] == [
        timedelta(seconds=0.01),
        timedelta(seconds=0.02),
    ]
    assert [delivery.attempts for delivery, _, _ in store.outcomes] == [1, 2, 3]
    assert len({body for _, body, _ in marketplace.bodies}) == 1
    assert json.loads(marketplace.bodies[0][1]) == json.loads(build_body(RECORD))
    assert store.handed_back == [running.owner]


async def test_an_event_that_cannot_be_built_is_a_failed_attempt() -> None:
    """A DEPLOYED publication whose descriptor is gone is not sent; the attempt fails,
    saying why, and stays pending for a later attempt."""
    store = FakeStore(replace(RECORD, document=None), pending=[DELIVERY])
    marketplace = FakeMarketplace([DeliveryOutcome(True, 202)])
    running = publisher(store, marketplace)
    running.start()
    try:
        await wait_for(lambda: store.outcomes)
    finally:
        await running.stop(grace_seconds=1)
    _, outcome, _ = store.outcomes[0]
    assert not outcome.acknowledged
    assert outcome.error == "cannot build the event: LookupError"
    assert marketplace.bodies == []


async def test_stopping_hands_back_what_is_still_being_sent() -> None:
    """On shutdown an attempt that does not finish within the grace period is cut, nothing
    is recorded for it, and the claim is handed back for another replica."""
    store = FakeStore(RECORD, pending=[DELIVERY])
    marketplace = FakeMarketplace([DeliveryOutcome(True, 202)], hold=asyncio.Event())
    running = publisher(store, marketplace)
    running.start()
    await wait_for(lambda: marketplace.bodies)
    await running.stop(grace_seconds=0.05)
    assert store.outcomes == []
    assert store.handed_back == [running.owner]
