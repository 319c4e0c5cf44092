"""ACL updates and manual repairs as operations, through the real service and the mock adapter
on loopback: an UPDATE_ACL runs in background like a deploy (events, refs on the component,
ACL_UPDATED to the Market Planes) and never corrupts; an OVERRIDE marks a CORRUPT component
by hand, at once, and the release follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServiceFactory
from tests.marketplace import (
    FAST_RETRIES,
    SECRET,
    market_events,
    publications,
    registry_with,
    release_becomes,
    release_of,
)
from tests.support import (
    ServerThread,
    component,
    finished_operation,
    open_gate,
    submit,
    unit,
    wait_until,
)

ENV = "development"


def component_path(unit_id: str, component_id: str) -> str:
    return f"/v1/deployment-units/{unit_id}/environments/{ENV}/components/{component_id}"


async def events_of(client: httpx.AsyncClient, operation_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/operations/{operation_id}/events")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def shown(release: dict[str, Any], component_id: str) -> dict[str, Any]:
    return next(item for item in release["components"] if item["componentId"] == component_id)


async def deployed(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    return await finished_operation(client, await submit(client, document))


# --- ACL updates -------------------------------------------------------------------------------


async def test_an_acl_update_is_an_operation_that_sends_provision_info_and_stores_the_refs(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """202 with an UPDATE_ACL operation (Location to follow it); its one task sends the refs,
    the component's descriptor YAML and last ProvisioningStatus (privateInfo included) to the
    adapter; the operation's events say so; the component shows the refs, stays DEPLOYED,
    and the release stays DEPLOYED."""
    port = f"{unit_id}:port"
    assert (await deployed(client, unit(unit_id, [component(port)])))["status"] == "SUCCEEDED"

    answer = await client.post(
        f"{component_path(unit_id, port)}/acl", json={"refs": ["user:alice", "group:bi"]}
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["type"] == "UPDATE_ACL"
    assert accepted["refs"] == ["user:alice", "group:bi"]
    assert answer.headers["location"] == f"/v1/operations/{accepted['id']}"
    operation = await finished_operation(client, accepted["id"])
    assert operation["status"] == "SUCCEEDED", operation
    (task,) = operation["tasks"]
    assert (task["componentId"], task["action"], task["status"]) == (
        port,
        "UPDATE_ACL",
        "SUCCEEDED",
    )

    seen = (await mock.get("/mock/components")).json()[port]
    assert seen["aclRefs"] == ["user:alice", "group:bi"]
    assert seen["aclResult"]["status"] == "COMPLETED"
    assert seen["aclResult"]["info"]["privateInfo"]["mockSecret"] == f"secret-{port}"
    assert {"status", "result", "info"} <= seen["aclResult"].keys()  # a whole ProvisioningStatus
    transitions = [
        (event["componentId"], event["oldStatus"], event["newStatus"])
        for event in await events_of(client, accepted["id"])
    ]
    assert (port, "WAITING", "RUNNING") in transitions
    assert (port, "RUNNING", "SUCCEEDED") in transitions
    assert transitions[-1] == (None, "RUNNING", "SUCCEEDED")

    release = await release_of(client, unit_id)
    assert release["status"] == "DEPLOYED"
    granted = shown(release, port)
    assert granted["status"] == "DEPLOYED"
    assert granted["refs"] == ["user:alice", "group:bi"]
    # The component's latest provisioning is still its deploy (what later requests tell
    # adapters in latestProvisioningOperation), and its info the provision's.
    assert granted["lastOperation"]["type"] == "DEPLOY"
    assert "mockSecret" not in str(granted)


async def test_a_failed_acl_update_fails_its_operation_and_leaves_the_component_deployed(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """The adapter answers FAILED: the operation is FAILED with the adapter's message; the
    component and the release stay DEPLOYED (an ACL failure corrupts nothing) and keep no
    refs; a later deploy of the release goes on as usual."""
    port = f"{unit_id}:port"
    document = unit(unit_id, [component(port, aclFail=True)])
    await deployed(client, document)

    answer = await client.post(f"{component_path(unit_id, port)}/acl", json={"refs": ["user:a"]})
    assert answer.status_code == 202, answer.text
    operation = await finished_operation(client, answer.json()["id"])
    assert operation["status"] == "FAILED"
    assert "specific.mock.aclFail asked for it" in operation["error"]
    assert operation["tasks"][0]["status"] == "FAILED"

    release = await release_of(client, unit_id)
    assert release["status"] == "DEPLOYED"
    assert shown(release, port)["status"] == "DEPLOYED"
    assert shown(release, port)["refs"] is None
    assert (await deployed(client, document))["status"] == "SUCCEEDED"


async def test_an_acl_update_needs_a_deployed_component_and_a_free_release(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """409 for a component not DEPLOYED (here CORRUPT) and while another operation runs on
    the release (naming it); 404 for an unknown component; 422 without refs."""
    port, broken = f"{unit_id}:port", f"{unit_id}:broken"
    await deployed(client, unit(unit_id, [component(port), component(broken, fail="provision")]))

    refused = await client.post(f"{component_path(unit_id, broken)}/acl", json={"refs": ["u:a"]})
    assert refused.status_code == 409, refused.text
    assert "CORRUPT" in refused.json()["detail"]
    unknown = await client.post(
        f"{component_path(unit_id, unit_id + ':nope')}/acl", json={"refs": ["u:a"]}
    )
    assert unknown.status_code == 404, unknown.text
    empty = await client.post(f"{component_path(unit_id, port)}/acl", json={"refs": []})
    assert empty.status_code == 422

    gate = f"hold-{unit_id}"
    held = await submit(client, unit(unit_id, [component(port), component(broken, gate=gate)]))
    busy = await client.post(f"{component_path(unit_id, port)}/acl", json={"refs": ["u:a"]})
    assert busy.status_code == 409, busy.text
    assert busy.json()["operationId"] == held
    await open_gate(mock, gate)
    assert (await finished_operation(client, held))["status"] == "SUCCEEDED"


async def test_an_acl_update_in_flight_holds_the_release_and_can_be_cancelled(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """While the adapter holds the grant, the release is IN_PROGRESS and a deploy of it is
    refused (409 naming the ACL update); cancelled, the operation ends CANCELLED and the
    component and release are DEPLOYED again, with no refs."""
    port, gate = f"{unit_id}:port", f"grant-{unit_id}"
    document = unit(unit_id, [component(port, aclGate=gate)])
    await deployed(client, document)
    answer = await client.post(f"{component_path(unit_id, port)}/acl", json={"refs": ["u:a"]})
    operation_id = answer.json()["id"]

    async def held() -> bool:
        gates = (await mock.get("/mock/gates")).json()
        return bool(gates.get(gate, {}).get("waiting"))

    await wait_until(held)
    assert (await release_of(client, unit_id))["status"] == "IN_PROGRESS"
    refused = await client.post("/v1/deployments", json={"descriptor": document})
    assert refused.status_code == 409, refused.text
    assert refused.json()["operationId"] == operation_id

    cancelled = await client.post(f"/v1/operations/{operation_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    operation = await finished_operation(client, operation_id)
    await open_gate(mock, gate)
    assert operation["status"] == "CANCELLED"
    assert operation["tasks"][0]["status"] == "CANCELLED"
    release = await release_of(client, unit_id)
    assert release["status"] == "DEPLOYED"
    assert (shown(release, port)["status"], shown(release, port)["refs"]) == ("DEPLOYED", None)


async def test_a_successful_acl_update_is_published_to_the_market_planes(
    database_url: str,
    service_factory: ServiceFactory,
    market: ServerThread,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """ACL_UPDATED, with the component and the refs, delivered (signed) after the DEPLOYED
    event; a failed ACL update publishes nothing."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    service = service_factory(database_url, config=registry, **FAST_RETRIES)
    port, refusing = f"{unit_id}:port", f"{unit_id}:refusing"
    document = unit(unit_id, [component(port), component(refusing, aclFail=True)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await deployed(client, document)
        await release_becomes(client, unit_id, "DEPLOYED")
        failed = await client.post(
            f"{component_path(unit_id, refusing)}/acl", json={"refs": ["user:x"]}
        )
        assert (await finished_operation(client, failed.json()["id"]))["status"] == "FAILED"
        answer = await client.post(
            f"{component_path(unit_id, port)}/acl", json={"refs": ["user:alice"]}
        )
        operation_id = answer.json()["id"]
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        await release_becomes(client, unit_id, "DEPLOYED")
        items = await publications(client, unit_id)

    async def delivered() -> list[dict[str, Any]] | None:
        events = (await market_events(market))["events"]
        return events if len(events) >= 2 else None

    received = await wait_until(delivered)
    assert [item["body"]["event"] for item in received] == ["DEPLOYED", "ACL_UPDATED"]
    acl = received[1]
    assert acl["signature"] == "valid"
    assert acl["body"]["componentId"] == port
    assert acl["body"]["refs"] == ["user:alice"]
    assert acl["body"]["operationId"] == operation_id
    assert acl["body"]["sequence"] > received[0]["body"]["sequence"]
    assert [item["event"] for item in items] == ["ACL_UPDATED", "DEPLOYED"]


# --- manual repair -----------------------------------------------------------------------------


async def test_a_corrupt_component_marked_deployed_by_hand_makes_the_release_follow(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """201 with an OVERRIDE operation, already SUCCEEDED, carrying the reason, with no task
    and no adapter call; its events record the change and the reason; the component is
    DEPLOYED and so is the release."""
    good, broken = f"{unit_id}:good", f"{unit_id}:broken"
    await deployed(client, unit(unit_id, [component(good), component(broken, fail="provision")]))
    assert (await release_of(client, unit_id))["status"] == "CORRUPT"
    calls = {"componentId": broken}
    calls_before = len((await mock.get("/mock/calls", params=calls)).json()["calls"])

    answer = await client.post(
        f"{component_path(unit_id, broken)}/status",
        json={"status": "DEPLOYED", "reason": "  table created by hand (INC-42)  "},
    )
    assert answer.status_code == 201, answer.text
    operation = answer.json()
    assert operation["type"] == "OVERRIDE"
    assert operation["status"] == "SUCCEEDED"
    assert operation["reason"] == "table created by hand (INC-42)"
    assert operation["components"] == [broken]
    assert operation["tasks"] == []
    assert answer.headers["location"] == f"/v1/operations/{operation['id']}"
    assert len((await mock.get("/mock/calls", params=calls)).json()["calls"]) == calls_before

    events = await events_of(client, operation["id"])
    marked = next(event for event in events if event["componentId"] == broken)
    assert (marked["oldStatus"], marked["newStatus"]) == ("CORRUPT", "DEPLOYED")
    assert marked["detail"]["reason"] == "table created by hand (INC-42)"
    release = await release_of(client, unit_id)
    assert release["status"] == "DEPLOYED"
    assert release["lastOperationId"] == operation["id"]
    assert shown(release, broken)["status"] == "DEPLOYED"
    listed = (await client.get("/v1/operations", params={"deploymentUnitId": unit_id})).json()
    assert listed["items"][0]["id"] == operation["id"]


async def test_a_corrupt_component_marked_not_deployed_leaves_the_release_partial(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    good, broken = f"{unit_id}:good", f"{unit_id}:broken"
    await deployed(client, unit(unit_id, [component(good), component(broken, fail="provision")]))

    answer = await client.post(
        f"{component_path(unit_id, broken)}/status",
        json={"status": "NOT_DEPLOYED", "reason": "removed by hand"},
    )
    assert answer.status_code == 201, answer.text
    release = await release_of(client, unit_id)
    assert shown(release, broken)["status"] == "NOT_DEPLOYED"
    assert release["status"] == "PARTIALLY_DEPLOYED"


async def test_only_a_corrupt_component_may_be_overridden_with_a_reason(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """409 for a DEPLOYED component and while another operation runs on the release; 404 for
    an unknown one; 422 without a reason, with a blank or an overlong one, or for a status
    other than DEPLOYED or NOT_DEPLOYED. Nothing is recorded by a refusal."""
    good, broken = f"{unit_id}:good", f"{unit_id}:broken"
    await deployed(client, unit(unit_id, [component(good), component(broken, fail="provision")]))
    path = f"{component_path(unit_id, broken)}/status"

    healthy = await client.post(
        f"{component_path(unit_id, good)}/status", json={"status": "NOT_DEPLOYED", "reason": "x"}
    )
    assert healthy.status_code == 409, healthy.text
    unknown = await client.post(
        f"{component_path(unit_id, unit_id + ':nope')}/status",
        json={"status": "DEPLOYED", "reason": "x"},
    )
    assert unknown.status_code == 404, unknown.text
    for body in (
        {"status": "DEPLOYED"},
        {"status": "DEPLOYED", "reason": "   "},
        {"status": "DEPLOYED", "reason": "x" * 1001},
        {"status": "CORRUPT", "reason": "x"},
        {"status": "DEPLOYED", "reason": "x", "extra": 1},
    ):
        assert (await client.post(path, json=body)).status_code == 422, body

    gate = f"hold-{unit_id}"
    held = await submit(
        client, unit(unit_id, [component(good, gate=gate), component(broken)]), components=[good]
    )
    busy = await client.post(path, json={"status": "DEPLOYED", "reason": "x"})
    assert busy.status_code == 409, busy.text
    assert busy.json()["operationId"] == held
    await open_gate(mock, gate)
    await finished_operation(client, held)
    listed = (await client.get("/v1/operations", params={"deploymentUnitId": unit_id})).json()
    assert "OVERRIDE" not in {item["type"] for item in listed["items"]}
    assert shown(await release_of(client, unit_id), broken)["status"] == "CORRUPT"
