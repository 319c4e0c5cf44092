"""Market Plane publication through the real service and the mock Market Plane, on loopback:
the DEPLOYED and UNDEPLOYED events, signed, in order, retried, and the release status that
waits for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.mockadapter import create_mock_app
from tests.conftest import ServiceFactory
from tests.marketplace import (
    FAST_RETRIES,
    SECRET,
    fail_deliveries,
    market_events,
    publications,
    registry_with,
    release_becomes,
    release_of,
)
from tests.streams import scrape, value
from tests.support import ServerThread, component, finished_operation, submit, unit, wait_until


async def test_a_deploy_is_published_signed_without_private_info_and_then_deployed(
    database_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One DEPLOYED event: signed with the secret taken from the environment, carrying the
    descriptor with each member's publicInfo and never privateInfo; the release is DEPLOYED
    once it is acknowledged, and the publications endpoint says so."""
    monkeypatch.setenv("TEST_MARKET_SECRET", SECRET)
    registry = registry_with(
        tmp_path, mock_adapter, ("catalog", market.url, "${TEST_MARKET_SECRET}")
    )
    service = service_factory(database_url, config=registry, **FAST_RETRIES)
    storage, port = f"{unit_id}:storage", f"{unit_id}:port"
    document = unit(
        unit_id,
        [
            component(storage, publicInfo={"table": {"type": "string", "value": "t1"}}),
            component(port, depends_on=[storage], privateInfo={"password": "hunter2"}),
        ],
        version="2.1.0",
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        release = await release_becomes(client, unit_id, "DEPLOYED")
        assert release["statusReason"] is None
        items = await publications(client, unit_id)

    received = await market_events(market)
    assert received["rejected"] == []
    (delivery,) = received["events"]
    assert delivery["signature"] == "valid"
    assert delivery["headers"]["x-plane"] == "catalog"
    event = delivery["body"]
    assert delivery["headers"]["x-provisioner-event-id"] == event["eventId"]
    assert delivery["headers"]["x-provisioner-event"] == "DEPLOYED"
    assert {k: event[k] for k in ("event", "deploymentUnitId", "environment", "version")} == {
        "event": "DEPLOYED",
        "deploymentUnitId": unit_id,
        "environment": "development",
        "version": "2.1.0",
    }
    assert event["operationId"] == operation_id
    assert event["occurredAt"].endswith("Z")
    by_id = {item["id"]: item for item in event["descriptor"]["components"]}
    assert by_id[storage]["info"]["publicInfo"]["table"]["value"] == "t1"
    assert "publicInfo" in by_id[port]["info"]
    raw = json.dumps(event)
    assert "privateInfo" not in raw
    assert "hunter2" not in raw
    assert "secret-" not in raw  # the mock's default privateInfo

    (item,) = items
    assert item["eventId"] == event["eventId"]
    assert item["sequence"] == event["sequence"]
    assert item["event"] == "DEPLOYED"
    assert item["operationId"] == operation_id
    (shown,) = item["deliveries"]
    assert shown["marketplace"] == "catalog"
    assert shown["status"] == "DELIVERED"
    assert shown["attempts"] == 1
    assert shown["lastStatusCode"] == 202
    assert shown["deliveredAt"] is not None
    assert shown["nextAttemptAt"] is None


async def test_the_release_is_in_progress_while_delivery_fails_then_deployed(
    database_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """Every component deployed, but the Market Plane answers 503: the release stays
    IN_PROGRESS saying why, the attempts and last error are listed; once the Market Plane
    recovers, a retry delivers the event and the release is DEPLOYED."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    service = service_factory(database_url, config=registry, **FAST_RETRIES)
    await fail_deliveries(market, 100_000)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"

        async def failed_twice() -> dict[str, Any] | None:
            (item,) = await publications(client, unit_id)
            (delivery,) = item["deliveries"]
            return delivery if delivery["attempts"] >= 2 and delivery["lastError"] else None

        delivery = await wait_until(failed_twice)
        assert delivery["status"] == "PENDING"
        assert delivery["lastStatusCode"] == 503
        assert "answered 503" in delivery["lastError"]
        assert delivery["overdue"] is False
        release = await release_of(client, unit_id)
        assert release["status"] == "IN_PROGRESS"
        assert "catalog" in release["statusReason"]
        assert "DEPLOYED" in release["statusReason"]
        assert all(item["status"] == "DEPLOYED" for item in release["components"])

        await fail_deliveries(market, 0)
        release = await release_becomes(client, unit_id, "DEPLOYED")
        assert release["statusReason"] is None
        (item,) = await publications(client, unit_id)
        assert item["deliveries"][0]["status"] == "DELIVERED"
        assert item["deliveries"][0]["attempts"] >= 3
        text = await scrape(client)
    refused = {"outcome": "failed", "reason": "http"}
    assert value(text, "provisioner_marketplace_deliveries_total", **refused) >= 2
    delivered = {"outcome": "delivered", "reason": ""}
    assert value(text, "provisioner_marketplace_deliveries_total", **delivered) == 1
    received = await market_events(market)
    assert [event["body"]["event"] for event in received["events"]] == ["DEPLOYED"]
    assert len(received["rejected"]) >= 2


async def test_past_the_publication_timeout_the_release_is_corrupt_until_a_retry_succeeds(
    database_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """As in Witboost: a release whose components all deployed but whose event the Market
    Plane did not acknowledge in time is CORRUPT, with the reason; a later successful
    delivery makes it DEPLOYED again."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    service = service_factory(
        database_url, config=registry, publication_timeout_seconds=0.5, **FAST_RETRIES
    )
    await fail_deliveries(market, 100_000, status=500)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        release = await release_becomes(client, unit_id, "CORRUPT")
        assert "'catalog' has not acknowledged the DEPLOYED event" in release["statusReason"]
        assert "answered 500" in release["statusReason"]
        (item,) = await publications(client, unit_id)
        assert item["deliveries"][0]["overdue"] is True
        listed = (await client.get("/v1/releases", params={"status": "CORRUPT"})).json()
        assert unit_id in [entry["deploymentUnitId"] for entry in listed["items"]]

        await fail_deliveries(market, 0)
        release = await release_becomes(client, unit_id, "DEPLOYED")
        assert release["statusReason"] is None
    assert len((await market_events(market))["events"]) == 1


async def test_a_wrong_signature_is_refused_and_the_event_kept_for_retry(
    sqlite_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """A Market Plane that checks the signature refuses one made with another secret (401);
    the event is not lost: it stays pending, the release IN_PROGRESS."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, "not-the-secret"))
    service = service_factory(sqlite_url, config=registry, **FAST_RETRIES)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"

        async def refused() -> dict[str, Any] | None:
            (item,) = await publications(client, unit_id)
            delivery: dict[str, Any] = item["deliveries"][0]
            return delivery if delivery["lastStatusCode"] == 401 else None

        delivery = await wait_until(refused)
        assert delivery["status"] == "PENDING"
        assert (await release_of(client, unit_id))["status"] == "IN_PROGRESS"
    received = await market_events(market)
    assert received["events"] == []
    assert received["rejected"][0]["signature"] == "wrong"


async def test_a_release_s_events_are_delivered_in_order(
    database_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """A deploy, then an undeploy, while the Market Plane fails: UNDEPLOYED is not sent
    before DEPLOYED is acknowledged; once the Market Plane recovers both arrive, in order, and
    the undeployed release is NOT_DEPLOYED."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    service = service_factory(database_url, config=registry, **FAST_RETRIES)
    first, second = f"{unit_id}:first", f"{unit_id}:second"
    await fail_deliveries(market, 100_000)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        deploy_id = await submit(client, unit(unit_id, [component(first), component(second)]))
        assert (await finished_operation(client, deploy_id))["status"] == "SUCCEEDED"
        response = await client.post(
            "/v1/undeployments",
            json={"deploymentUnitId": unit_id, "environment": "development"},
        )
        assert response.status_code == 202, response.text
        undeploy_id = response.json()["id"]
        assert (await finished_operation(client, undeploy_id))["status"] == "SUCCEEDED"

        async def both_waiting() -> list[dict[str, Any]] | None:
            items = await publications(client, unit_id)
            return items if len(items) == 2 and items[1]["deliveries"][0]["attempts"] >= 2 else None

        items = await wait_until(both_waiting)
        assert [item["event"] for item in items] == ["UNDEPLOYED", "DEPLOYED"]  # newest first
        assert items[0]["deliveries"][0]["attempts"] == 0  # waits for DEPLOYED
        assert (await release_of(client, unit_id))["status"] == "IN_PROGRESS"

        await fail_deliveries(market, 0)
        release = await release_becomes(client, unit_id, "NOT_DEPLOYED")
        assert release["statusReason"] is None
    received = await market_events(market)
    bodies = [event["body"] for event in received["events"]]
    assert [body["event"] for body in bodies] == ["DEPLOYED", "UNDEPLOYED"]
    assert bodies[0]["sequence"] < bodies[1]["sequence"]
    assert bodies[0]["operationId"] == deploy_id
    assert bodies[1]["operationId"] == undeploy_id
    assert sorted(bodies[1]["components"]) == sorted([first, second])
    assert bodies[1]["wholeUnit"] is True
    assert all(json.loads(entry["body"])["event"] == "DEPLOYED" for entry in received["rejected"])


async def test_the_release_waits_for_every_market_plane(
    sqlite_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """Two Market Planes, one failing: the other receives the event at once, and the release
    is DEPLOYED only once both acknowledged it."""
    other = ServerThread(create_mock_app()).start()
    try:
        registry = registry_with(
            tmp_path, mock_adapter, ("catalog", market.url, SECRET), ("search", other.url, "x")
        )
        service = service_factory(sqlite_url, config=registry, **FAST_RETRIES)
        await fail_deliveries(market, 100_000)
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
            assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"

            async def delivered_to_search() -> bool:
                # Acknowledged as the service recorded it, not only received: the release is
                # derived from what was recorded.
                (item,) = await publications(client, unit_id)
                shown = {d["marketplace"]: d["status"] for d in item["deliveries"]}
                return shown == {"catalog": "PENDING", "search": "DELIVERED"}

            await wait_until(delivered_to_search)
            release = await release_of(client, unit_id)
            assert release["status"] == "IN_PROGRESS"
            assert "'catalog'" in release["statusReason"]
            await fail_deliveries(market, 0)
            await release_becomes(client, unit_id, "DEPLOYED")
        assert len((await market_events(market))["events"]) == 1
        assert len((await market_events(other))["events"]) == 1
    finally:
        other.stop(force=True)


async def test_publications_of_an_unknown_release_are_404_and_a_bad_cursor_400(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    base = f"/v1/deployment-units/{unit_id}/environments/development/publications"
    response = await client.get(base)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
    await finished_operation(client, operation_id)
    # Without Market Planes nothing is published, and the release is DEPLOYED at once.
    assert (await client.get(base)).json() == {"items": [], "nextCursor": None}
    assert (await release_of(client, unit_id))["status"] == "DEPLOYED"
    assert (await client.get(base, params={"cursor": "nope"})).status_code == 400
