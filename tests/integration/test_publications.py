"""The outbox and its deliveries in the SQL store, on SQLite and PostgreSQL: an event commits
with the end of the operation it announces and says what was true then; deliveries are claimed
in order per release, by one owner at a time, and fenced; the publication timeout and its
clearing; the ACL_UPDATED event at the store level."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from provisioner.domain.descriptor import parse_descriptor
from provisioner.domain.plan import plan_deploy
from provisioner.domain.publication import PublicationEvent, acl_detail
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskStatus,
)
from provisioner.engine.ports import (
    ComponentState,
    Delivery,
    DeliveryOutcome,
    OperationHeader,
    OperationWrite,
    StateWrite,
)
from provisioner.engine.publisher import build_body
from provisioner.service.ids import new_operation_id
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.models import (
    components,
    deliveries,
    publications,
    published_components,
    releases,
)
from provisioner.store.operations import SqlOperationStore, refresh_release
from provisioner.store.outbox import NewPublication, record_publication
from provisioner.store.publications import SqlPublicationStore
from provisioner.store.queries import Queries
from provisioner.store.submissions import NewOperation, Submissions
from tests.support import component, unit

LEASE = 30.0
PLANES = ("catalog", "search")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


def now() -> datetime:
    return datetime.now(UTC)


async def deployed(
    database: Database,
    unit_id: str,
    *,
    marketplaces: tuple[str, ...] = PLANES,
    fenced_out: bool = False,
    only: tuple[str, ...] | None = None,
    tag: str = "t",
) -> str:
    """Run a deploy of ``unit_id`` (components a and b, or ``only`` some) through the store
    as the engine does: submit, claim, then one write with every task SUCCEEDED (public info
    ``{table: <tag>-<id>}``, and private info) and the operation's end. ``fenced_out``:
    another owner took the operation over first."""
    document = unit(unit_id, [component("a"), component("b", depends_on=["a"])])
    parsed = parse_descriptor(document)
    header = OperationHeader(
        id=new_operation_id(),
        type=OperationType.DEPLOY,
        deployment_unit_id=unit_id,
        environment="development",
        version="1.0.0",
        remove_data=False,
        created_at=now(),
    )
    rows = (ComponentState(unit_id, True), ComponentState("a", False), ComponentState("b", False))
    await Submissions(database).submit(
        NewOperation(
            header=header,
            plan=plan_deploy(parsed.unit, selected=only, deployed=("a", "b")),
            descriptor_json=json.dumps(document),
            requested_components=only,
            components=rows,
        )
    )
    store = SqlOperationStore(database, marketplaces=marketplaces)
    (claimed,) = await store.claim(
        owner="r/1", replica_id="r", limit=1, lease_seconds=LEASE, now=now()
    )
    if fenced_out:
        await store.release_leases([claimed.fence])
        await store.claim(owner="r2/1", replica_id="r2", limit=1, lease_seconds=LEASE, now=now())
    done = now()
    infos = {cid: {"table": f"{tag}-{cid}"} for cid in ("a", "b")}
    ran = {task.component_id for task in claimed.tasks}
    write = StateWrite(
        fence=claimed.fence,
        header=claimed.header,
        members=[unit_id, "a", "b"],
        tasks=[
            replace(
                task,
                status=TaskStatus.SUCCEEDED,
                public_info=infos.get(task.component_id),
                private_info={"key": "private"},
            )
            for task in claimed.tasks
        ],
        components=[
            replace(
                state,
                status=ComponentStatus.DEPLOYED,
                public_info=infos.get(cid),
                private_info={"key": "private"},
            )
            for cid, state in claimed.components.items()
            if cid in ran
        ],
        operation=OperationWrite(OperationStatus.SUCCEEDED, started_at=done, finished_at=done),
    )
    await store.apply([write], lease_seconds=LEASE)
    return header.id


async def release_status(database: Database, unit_id: str) -> tuple[ReleaseStatus, str | None]:
    release = await Queries(database).release(unit_id, "development")
    assert release is not None
    return release.status, release.status_reason


async def claim(
    store: SqlPublicationStore, owner: str = "r/1", *, at: datetime | None = None, limit: int = 50
) -> list[Delivery]:
    return await store.claim_deliveries(
        owner=owner,
        replica_id=owner.split("/", maxsplit=1)[0],
        marketplaces=PLANES,
        limit=limit,
        lease_seconds=LEASE,
        now=at or now(),
    )


ACK = DeliveryOutcome(True, 202)
FAIL = DeliveryOutcome(False, 503, "answered 503")


async def record(
    store: SqlPublicationStore, delivery: Delivery, outcome: DeliveryOutcome, owner: str = "r/1"
) -> bool:
    return await store.record_delivery(
        delivery, owner=owner, outcome=outcome, now=now(), retry_at=now()
    )


async def test_a_successful_deploy_publishes_in_its_final_write_and_waits_for_acks(
    database: Database,
) -> None:
    """The operation's end writes DEPLOYED with one delivery per Market Plane; the release is
    IN_PROGRESS, naming the Market Plane, until each acknowledged it, then DEPLOYED."""
    operation_id = await deployed(database, "u1")
    status, reason = await release_status(database, "u1")
    assert status is ReleaseStatus.IN_PROGRESS
    assert reason == (
        f"publishing the DEPLOYED event of operation {operation_id} to the Market Plane 'catalog'"
    )
    store = SqlPublicationStore(database)
    claimed = await claim(store)
    assert [(d.deployment_unit_id, d.marketplace, d.attempts) for d in claimed] == [
        ("u1", "catalog", 1),
        ("u1", "search", 1),
    ]
    assert await record(store, claimed[0], ACK)
    status, reason = await release_status(database, "u1")
    assert status is ReleaseStatus.IN_PROGRESS
    assert reason is not None
    assert "'search'" in reason
    assert await record(store, claimed[1], ACK)
    assert await release_status(database, "u1") == (ReleaseStatus.DEPLOYED, None)


async def test_nothing_is_published_without_market_planes_or_when_the_fence_failed(
    database: Database,
) -> None:
    """No Market Plane configured: no event, and the release is DEPLOYED at once. A final
    write refused by the fence publishes nothing either: the event commits with it or not."""
    await deployed(database, "quiet", marketplaces=())
    assert await release_status(database, "quiet") == (ReleaseStatus.DEPLOYED, None)
    await deployed(database, "fenced", fenced_out=True)
    async with database.read() as conn:
        count = len((await conn.execute(select(publications.c.id))).all())
    assert count == 0


async def test_what_an_event_says_is_fixed_when_it_is_published(database: Database) -> None:
    """A later change of a component's public info (another deploy) does not change the
    DEPLOYED event already published; no privateInfo is in it. A full deploy copies nothing:
    its own tasks hold what it provisioned."""
    operation_id = await deployed(database, "fixed")
    async with database.read() as conn:
        assert (await conn.execute(select(published_components))).all() == []
    await database.transaction(
        lambda conn: conn.execute(
            update(components)
            .where(components.c.component_id == "a")
            .values(public_info={"table": "changed"})
        )
    )
    store = SqlPublicationStore(database)
    (first, _) = await claim(store)
    record_ = await store.publication(first.publication_id)
    assert record_ is not None
    event = json.loads(build_body(record_))
    assert event["event"] == "DEPLOYED"
    assert event["operationId"] == operation_id
    assert event["sequence"] == first.publication_id
    by_id = {item["id"]: item for item in event["descriptor"]["components"]}
    assert by_id["a"]["info"] == {"publicInfo": {"table": "t-a"}}
    assert by_id["b"]["info"] == {"publicInfo": {"table": "t-b"}}
    assert "private" not in json.dumps(event)
    assert build_body(record_) == build_body(record_)  # the same bytes on every attempt


async def test_a_deploy_of_some_components_publishes_the_others_as_they_were(
    database: Database,
) -> None:
    """A deploy of b alone: the event has b's new public info (from the operation's task)
    and a's as it was then (copied), even once a changes afterwards."""
    await deployed(database, "subset", marketplaces=())
    await deployed(database, "subset", only=("b",), tag="new")
    await database.transaction(
        lambda conn: conn.execute(
            update(components)
            .where(components.c.component_id == "a")
            .values(public_info={"table": "changed"})
        )
    )
    store = SqlPublicationStore(database)
    (delivery, _) = await claim(store)
    record_ = await store.publication(delivery.publication_id)
    assert record_ is not None
    by_id = {
        item["id"]: item for item in json.loads(build_body(record_))["descriptor"]["components"]
    }
    assert by_id["a"]["info"] == {"publicInfo": {"table": "t-a"}}
    assert by_id["b"]["info"] == {"publicInfo": {"table": "new-b"}}
    async with database.read() as conn:
        copied = (await conn.execute(select(published_components.c.component_id))).scalars()
        assert list(copied) == ["a"]


async def test_a_release_s_later_event_waits_for_the_earlier_one_per_market_plane(
    database: Database,
) -> None:
    """Two events of one release: for each Market Plane the second is claimable only once the
    first is acknowledged there; a failed attempt keeps the order; another release is not
    held up."""
    await deployed(database, "ordered")
    later = await database.transaction(
        lambda conn: record_publication(
            conn,
            NewPublication(
                event=PublicationEvent.ACL_UPDATED,
                deployment_unit_id="ordered",
                environment="development",
                operation_id=_last_operation(conn, "ordered"),
                version="1.0.0",
                occurred_at=now(),
                detail=acl_detail("a", ["user:alice"]),
            ),
            PLANES,
        )
    )
    await deployed(database, "other")
    store = SqlPublicationStore(database)
    claimed = await claim(store)
    assert [(d.deployment_unit_id, d.marketplace) for d in claimed] == [
        ("ordered", "catalog"),
        ("ordered", "search"),
        ("other", "catalog"),
        ("other", "search"),
    ]
    assert all(d.publication_id != later for d in claimed)
    assert await record(store, claimed[0], FAIL)  # retry due at once, still first in line
    assert await record(store, claimed[1], ACK)
    again = await claim(store)
    assert [(d.publication_id, d.marketplace, d.attempts) for d in again] == [
        (claimed[0].publication_id, "catalog", 2),
        (later, "search", 1),
    ]


def _last_operation(conn: Any, unit_id: str) -> str:
    value: str = conn.execute(
        select(releases.c.last_operation_id).where(releases.c.deployment_unit_id == unit_id)
    ).scalar_one()
    return value


async def test_a_delivery_is_claimed_by_one_owner_at_a_time(database: Database) -> None:
    """Owners claiming at the same instant take different deliveries; a live claim is not
    taken again; a lapsed one is, and the late outcome of the first owner is refused."""
    for index in range(6):
        await deployed(database, f"many-{index}", marketplaces=("catalog",))
    store = SqlPublicationStore(database)
    first, second = await asyncio.gather(
        claim(store, "r1/a", limit=4), claim(store, "r2/a", limit=4)
    )
    keys = [(d.publication_id, d.marketplace) for d in [*first, *second]]
    assert len(keys) == 6
    assert len(set(keys)) == 6
    assert await claim(store, "r3/a") == []

    lapsed = now() + timedelta(seconds=LEASE + 1)
    taken = await claim(store, "r3/a", at=lapsed)
    assert len(taken) == 6
    assert not await record(store, first[0], ACK, owner="r1/a")
    mine = next(d for d in taken if d.publication_id == first[0].publication_id)
    assert mine.attempts == 2
    assert await record(store, mine, ACK, owner="r3/a")


async def test_a_restarted_replica_takes_back_its_claims_at_once(database: Database) -> None:
    """A new process with the replica id of one that claimed and died does not wait out the
    lease; a handed-back claim is free for anyone."""
    await deployed(database, "restart", marketplaces=("catalog",))
    store = SqlPublicationStore(database)
    (held,) = await claim(store, "r1/old")
    assert not await store.due(owner="r2/a", replica_id="r2", marketplaces=PLANES, now=now())
    assert await claim(store, "r2/a") == []
    assert await store.due(owner="r1/new", replica_id="r1", marketplaces=PLANES, now=now())
    (again,) = await claim(store, "r1/new")
    assert again.publication_id == held.publication_id
    assert again.attempts == 2
    await store.release_claims("r1/new")
    (third,) = await claim(store, "r2/a")
    assert third.attempts == 3


async def test_an_overdue_event_makes_the_release_corrupt_until_it_is_acknowledged(
    database: Database,
) -> None:
    """Past the publication timeout the release is CORRUPT, saying which Market Plane did
    not acknowledge which event and its last error; an acknowledgement clears it."""
    operation_id = await deployed(database, "late", marketplaces=("catalog",))
    store = SqlPublicationStore(database)
    (delivery,) = await claim(store)
    assert await record(store, delivery, FAIL)
    assert await store.mark_overdue(cutoff=now() - timedelta(hours=1), now=now()) == 0
    assert await store.mark_overdue(cutoff=now() + timedelta(seconds=1), now=now()) == 1
    assert await store.mark_overdue(cutoff=now() + timedelta(seconds=1), now=now()) == 0
    status, reason = await release_status(database, "late")
    assert status is ReleaseStatus.CORRUPT
    assert reason == (
        f"the Market Plane 'catalog' has not acknowledged the DEPLOYED event of operation "
        f"{operation_id} within the publication timeout (1 attempt(s), last: answered 503)"
    )
    (retry,) = await claim(store)
    assert await record(store, retry, ACK)
    assert await release_status(database, "late") == (ReleaseStatus.DEPLOYED, None)


async def test_the_acl_updated_event_built_from_the_outbox(database: Database) -> None:
    """``record_publication`` inside a store transaction: an ACL_UPDATED event names the
    component and the refs; the release waits for it once its status is derived again."""
    await deployed(database, "acl", marketplaces=())
    moment = now()

    def publish(conn: Any) -> int | None:
        publication_id = record_publication(
            conn,
            NewPublication(
                event=PublicationEvent.ACL_UPDATED,
                deployment_unit_id="acl",
                environment="development",
                operation_id=_last_operation(conn, "acl"),
                version="1.0.0",
                occurred_at=moment,
                detail=acl_detail("a", ["user:alice", "group:data"]),
            ),
            ("catalog",),
        )
        refresh_release(conn, "acl", "development", moment)
        return publication_id

    publication_id = await database.transaction(publish)
    assert publication_id is not None
    assert (await release_status(database, "acl"))[0] is ReleaseStatus.IN_PROGRESS
    store = SqlPublicationStore(database)
    record_ = await store.publication(publication_id)
    assert record_ is not None
    event = json.loads(build_body(record_))
    assert event == {
        "eventId": record_.event_id,
        "sequence": publication_id,
        "event": "ACL_UPDATED",
        "deploymentUnitId": "acl",
        "environment": "development",
        "version": "1.0.0",
        "operationId": record_.operation_id,
        "occurredAt": moment.isoformat().replace("+00:00", "Z"),
        "componentId": "a",
        "refs": ["user:alice", "group:data"],
    }
    async with database.read() as conn:
        planes = (await conn.execute(select(deliveries.c.marketplace))).scalars().all()
    assert planes == ["catalog"]
