"""Deploy and undeploy end to end: the real service over loopback against the mock adapter,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import ServiceFactory
from tests.fixtures import DESCRIPTORS
from tests.support import (
    SYSTEM,
    calls_received,
    component,
    finished_operation,
    open_gate,
    submit,
    tasks_by_id,
    unit,
    wait_until,
    write_registry,
)


async def deploy(
    client: httpx.AsyncClient, document: dict[str, Any], **body: Any
) -> dict[str, Any]:
    response = await client.post("/v1/deployments", json={"descriptor": document, **body})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/operations/{response.json()['id']}"
    return await finished_operation(client, response.json()["id"])


async def undeploy(client: httpx.AsyncClient, unit_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/undeployments",
        json={"deploymentUnitId": unit_id, "environment": "development", **body},
    )
    assert response.status_code == 202, response.text
    return await finished_operation(client, response.json()["id"])


async def release(client: httpx.AsyncClient, unit_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(
        f"/v1/deployment-units/{unit_id}/environments/development", params=params
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def calls_for(mock: httpx.AsyncClient, ids: set[str], action: str) -> list[dict[str, Any]]:
    calls = (await mock.get("/mock/calls", params={"action": action})).json()["calls"]
    return [call for call in calls if call["componentId"] in ids]


def ids(unit_id: str, *names: str) -> list[str]:
    return [f"{unit_id}:{name}" for name in names]


async def test_deploys_system_first_then_each_component_after_its_dependencies(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The system step runs first; a component starts only after all it depends on."""
    a, b, c, d = ids(unit_id, "a", "b", "c", "d")
    document = unit(
        unit_id,
        [
            component(a, latencyMs=50),
            component(b, depends_on=[a], latencyMs=20),
            component(c, depends_on=[a], latencyMs=20),
            component(d, depends_on=[b, c]),
        ],
        template=SYSTEM,
    )
    operation = await deploy(client, document)

    assert operation["status"] == "SUCCEEDED"
    assert next(task["componentId"] for task in operation["tasks"]) == unit_id
    calls = {
        call["componentId"]: call
        for call in await calls_for(mock, {unit_id, a, b, c, d}, "provision")
    }
    assert calls[unit_id]["descriptorKind"] == "DATAPRODUCT_DESCRIPTOR"
    assert calls[a]["descriptorKind"] == "COMPONENT_DESCRIPTOR"
    for child, parents in {a: [unit_id], b: [a], c: [a], d: [b, c]}.items():
        for parent in parents:
            assert calls[child]["receivedAt"] >= calls[parent]["answeredAt"], (child, parent)
    state = await release(client, unit_id)
    assert state["status"] == "DEPLOYED"
    assert state["version"] == "1.0.0"
    assert {c["componentId"]: c["status"] for c in state["components"]} == dict.fromkeys(
        [a, b, c, d], "DEPLOYED"
    )
    assert state["info"]["publicInfo"]["componentId"]["value"] == unit_id


async def test_a_component_starts_as_soon_as_its_own_dependencies_succeed(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Eager scheduling: with A -> B beside C -> D, D starts while A runs (A's answer is held
    by a gate until D's call has arrived: level-by-level scheduling would never send it)."""
    a, b, c, d = ids(unit_id, "a", "b", "c", "d")
    gate = f"{unit_id}:gate"
    document = unit(
        unit_id,
        [
            component(a, gate=gate),
            component(b, depends_on=[a]),
            component(c),
            component(d, depends_on=[c]),
        ],
    )
    operation_id = await submit(client, document)

    async def d_called() -> bool:
        return await calls_received(mock, d) == 1

    await wait_until(d_called)
    await open_gate(mock, gate)
    operation = await finished_operation(client, operation_id)

    assert operation["status"] == "SUCCEEDED"
    calls = {call["componentId"]: call for call in await calls_for(mock, {a, b, c, d}, "provision")}
    assert calls[d]["receivedAt"] < calls[a]["answeredAt"]


async def test_independent_components_are_provisioned_concurrently(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Components with no dependency between them are all in flight at the same time."""
    names = ids(unit_id, "p", "q", "r", "s")
    gate = f"{unit_id}:gate"
    operation_id = await submit(client, unit(unit_id, [component(n, gate=gate) for n in names]))

    async def all_called() -> bool:
        return all([await calls_received(mock, n) == 1 for n in names])

    await wait_until(all_called)  # every call has arrived while the adapter holds them all
    await open_gate(mock, gate)
    operation = await finished_operation(client, operation_id)

    assert operation["status"] == "SUCCEEDED"
    calls = await calls_for(mock, set(names), "provision")
    assert len(calls) == 4
    assert max(call["receivedAt"] for call in calls) < min(call["answeredAt"] for call in calls)


async def test_a_failed_component_makes_the_release_corrupt_and_nothing_downstream_runs(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Downstream of a failure is SKIPPED; an independent branch still deploys."""
    a, broken, after, beside, slow = ids(unit_id, "a", "broken", "after", "beside", "slow")
    document = unit(
        unit_id,
        [
            component(a),
            component(broken, depends_on=[a], fail="provision"),
            component(after, depends_on=[broken]),
            component(beside, depends_on=[a]),
            component(slow, latencyMs=300),
        ],
    )
    operation = await deploy(client, document)

    tasks = tasks_by_id(operation)
    assert operation["status"] == "FAILED"
    assert tasks[broken]["status"] == "FAILED"
    assert "FAILED" in tasks[broken]["error"]["message"]
    assert tasks[after]["status"] == "SKIPPED"
    assert tasks[beside]["status"] == "SUCCEEDED"
    assert tasks[slow]["status"] == "SUCCEEDED"
    assert await calls_for(mock, {after}, "provision") == []
    state = await release(client, unit_id)
    components = {c["componentId"]: c for c in state["components"]}
    assert state["status"] == "CORRUPT"
    assert components[broken]["status"] == "CORRUPT"
    assert components[after]["status"] == "NOT_DEPLOYED"
    assert components[after]["lastOperation"]["status"] == "SKIPPED"
    assert components[beside]["status"] == "DEPLOYED"


async def test_async_adapters_are_polled_until_completed(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """A 202 token (JSON-quoted or plain text) is polled until the adapter says COMPLETED."""
    json_token, text_token = ids(unit_id, "json-token", "text-token")
    document = unit(
        unit_id,
        [
            component(json_token, mode="async", polls=3),
            component(text_token, mode="async", polls=2, tokenFormat="text"),
        ],
    )
    operation = await deploy(client, document)

    assert operation["status"] == "SUCCEEDED", operation
    assert all(task["attempts"] == 1 for task in operation["tasks"])
    posts = await calls_for(mock, {json_token}, "provision")
    polls = [
        call
        for call in (await mock.get("/mock/calls", params={"action": "status"})).json()["calls"]
        if call["token"] == posts[0]["token"]
    ]
    assert len(polls) == 4  # three RUNNING answers, then COMPLETED
    events = (await client.get(f"/v1/operations/{operation['id']}/events")).json()["items"]
    assert any(e["componentId"] == json_token and "token" in (e["detail"] or {}) for e in events)


async def test_adapter_errors_are_stored_readably_on_the_task(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """400, 500, an unreadable body and an unreachable adapter each end the task FAILED."""
    rejected, crashed, garbage, unreachable = ids(unit_id, "rejected", "crashed", "garbage", "dead")
    document = unit(
        unit_id,
        [
            component(rejected, fail="provision", failHow=400),
            component(crashed, fail="provision", failHow=500),
            component(garbage, garbage=True),
            component(unreachable, template="urn:test:itm:dead:0"),
        ],
    )
    operation = await deploy(client, document)

    tasks = tasks_by_id(operation)
    assert operation["status"] == "FAILED"
    assert tasks[rejected]["error"]["statusCode"] == 400
    assert tasks[rejected]["error"]["userMessage"]
    assert tasks[crashed]["error"]["statusCode"] == 500
    assert "invalid answer" in tasks[garbage]["error"]["message"]
    assert "cannot reach" in tasks[unreachable]["error"]["message"]
    assert all(task["status"] in ("FAILED", "SUCCEEDED") for task in operation["tasks"])


async def test_undeploy_runs_in_reverse_order_with_remove_data(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Dependents are unprovisioned before what they depend on; the system goes last."""
    a, b, c = ids(unit_id, "a", "b", "c")
    document = unit(
        unit_id,
        [component(a), component(b, depends_on=[a]), component(c, depends_on=[b])],
        template=SYSTEM,
    )
    await deploy(client, document)
    operation = await undeploy(client, unit_id, removeData=True)

    assert operation["type"] == "UNDEPLOY"
    assert operation["status"] == "SUCCEEDED"
    calls = await calls_for(mock, {unit_id, a, b, c}, "unprovision")
    assert [call["componentId"] for call in calls] == [c, b, a, unit_id]
    assert all(call["removeData"] is True for call in calls)
    for earlier, later in itertools.pairwise(calls):
        assert later["receivedAt"] >= earlier["answeredAt"]
    adapter_view = (await mock.get("/mock/components")).json()
    assert adapter_view[a] == adapter_view[a] | {"provisioned": False, "lastRemoveData": True}
    state = await release(client, unit_id)
    assert state["status"] == "NOT_DEPLOYED"
    assert state["version"] is None


async def test_unprovision_sends_the_descriptor_of_the_last_successful_provision(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Undeploy sends each component the descriptor it was provisioned with, and the last
    deployed descriptor enriched with every component's info (privateInfo included)."""
    a = f"{unit_id}:a"
    await deploy(client, unit(unit_id, [component(a)], version="2.0.0"))
    await undeploy(client, unit_id)

    request = (await mock.get("/mock/requests", params={"componentId": a})).json()["requests"][-1]
    assert request["action"] == "unprovision"
    sent = yaml.safe_load(request["descriptor"])
    assert sent["componentIdToProvision"] == a
    assert sent["dataProduct"]["version"] == "2.0.0"
    enriched = yaml.safe_load(request["latestEnrichedDescriptor"])
    info = enriched["components"][0]["info"]
    assert info["privateInfo"] == {"mockSecret": f"secret-{a}"}
    assert info["latestProvisioningOperation"] == {"operation": "Deploy", "status": "Successful"}


async def test_private_info_is_never_returned_by_the_api(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """privateInfo is stored for adapters but appears in no API answer."""
    a = f"{unit_id}:a"
    operation = await deploy(client, unit(unit_id, [component(a)]))
    answers = [
        operation,
        await release(client, unit_id, includeDescriptor="true"),
        (
            await client.get(
                f"/v1/deployment-units/{unit_id}/environments/development/components/{a}"
            )
        ).json(),
        (await client.get("/v1/operations")).json(),
    ]
    for answer in answers:
        assert "privateInfo" not in str(answer)
        assert "secret-" not in str(answer)
    described = answers[1]["descriptor"]
    assert described["components"][0]["info"]["publicInfo"]["componentId"]["value"] == a


async def test_partial_deploy_deploys_only_the_listed_components(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """A subset deploy leaves the release PARTIALLY_DEPLOYED; a later subset may depend on
    deployed components; one that depends on an undeployed, unlisted component is refused."""
    a, b, c, d = ids(unit_id, "a", "b", "c", "d")
    document = unit(
        unit_id,
        [component(a), component(b, depends_on=[a]), component(c), component(d, depends_on=[c])],
    )
    first = await deploy(client, document, components=[a])
    assert [task["componentId"] for task in first["tasks"]] == [unit_id, a]
    assert (await release(client, unit_id))["status"] == "PARTIALLY_DEPLOYED"

    second = await deploy(client, document, components=[b])
    assert second["status"] == "SUCCEEDED"
    refused = await client.post("/v1/deployments", json={"descriptor": document, "components": [d]})
    assert refused.status_code == 422
    assert any(c in error["message"] for error in refused.json()["errors"])
    assert await calls_for(mock, {c, d}, "provision") == []
    state = await release(client, unit_id)
    assert {x["componentId"]: x["status"] for x in state["components"]} == {
        a: "DEPLOYED",
        b: "DEPLOYED",
        c: "NOT_DEPLOYED",
        d: "NOT_DEPLOYED",
    }
    assert state["status"] == "PARTIALLY_DEPLOYED"


async def test_partial_undeploy_refuses_to_orphan_a_dependent(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Undeploying a component that a deployed component outside the subset depends on is
    refused; undeploying the dependent alone is fine and keeps the system deployed."""
    a, b = ids(unit_id, "a", "b")
    await deploy(
        client, unit(unit_id, [component(a), component(b, depends_on=[a])], template=SYSTEM)
    )
    refused = await client.post(
        "/v1/undeployments",
        json={"deploymentUnitId": unit_id, "environment": "development", "components": [a]},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["message"] == f"{b!r} stays deployed but depends on {a!r}"

    operation = await undeploy(client, unit_id, components=[b])
    assert [task["componentId"] for task in operation["tasks"]] == [b]
    assert (await release(client, unit_id))["status"] == "PARTIALLY_DEPLOYED"
    assert await calls_for(mock, {unit_id}, "unprovision") == []


async def test_a_second_operation_on_the_same_release_is_refused_with_409(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """While an operation is active, another deploy or undeploy gets 409 naming it."""
    gate = f"{unit_id}:gate"  # keeps the first operation active until the checks are done
    document = unit(unit_id, [component(f"{unit_id}:slow", gate=gate)])
    first = (await client.post("/v1/deployments", json={"descriptor": document})).json()

    again = await client.post("/v1/deployments", json={"descriptor": document})
    undo = await client.post(
        "/v1/undeployments", json={"deploymentUnitId": unit_id, "environment": "development"}
    )
    for response in (again, undo):
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["operationId"] == first["id"]
    assert (await release(client, unit_id))["status"] == "IN_PROGRESS"
    await open_gate(mock, gate)
    assert (await finished_operation(client, first["id"]))["status"] == "SUCCEEDED"
    other_environment = await client.post(
        "/v1/deployments",
        json={"descriptor": unit(unit_id, [], environment="qa"), "environment": "qa"},
    )
    assert other_environment.status_code == 202


async def test_undeploy_of_nothing_deployed_is_404(client: httpx.AsyncClient, unit_id: str) -> None:
    """Undeploy answers 404 where nothing was ever deployed, and after a full undeploy."""
    response = await client.post(
        "/v1/undeployments", json={"deploymentUnitId": unit_id, "environment": "development"}
    )
    assert response.status_code == 404
    await deploy(client, unit(unit_id, [component(f"{unit_id}:a")]))
    await undeploy(client, unit_id)
    response = await client.post(
        "/v1/undeployments", json={"deploymentUnitId": unit_id, "environment": "development"}
    )
    assert response.status_code == 404


async def test_events_list_every_transition_in_order(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """The audit trail: operation and task transitions, oldest first, resumable by id."""
    a = f"{unit_id}:a"
    operation = await deploy(client, unit(unit_id, [component(a)]))
    events = (await client.get(f"/v1/operations/{operation['id']}/events")).json()["items"]

    transitions = [(e["componentId"], e["oldStatus"], e["newStatus"]) for e in events]
    assert transitions[:2] == [(None, None, "PENDING"), (None, "PENDING", "RUNNING")]
    assert transitions[-1] == (None, "RUNNING", "SUCCEEDED")
    assert (a, "WAITING", "RUNNING") in transitions
    assert (a, "RUNNING", "SUCCEEDED") in transitions
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    later = await client.get(
        f"/v1/operations/{operation['id']}/events", params={"after": events[2]["id"]}
    )
    assert later.json()["items"] == events[3:]


async def test_operations_are_listed_newest_first_with_filters_and_cursor(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """Pagination walks every operation once; filters narrow the list."""
    document = unit(unit_id, [component(f"{unit_id}:a")])
    created = [(await deploy(client, document))["id"] for _ in range(3)]

    seen, cursor = [], None
    while True:
        params = {"deploymentUnitId": unit_id, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/operations", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    failed = await client.get(
        "/v1/operations", params={"deploymentUnitId": unit_id, "status": "FAILED"}
    )
    assert failed.json()["items"] == []
    releases = (await client.get("/v1/releases", params={"status": "DEPLOYED"})).json()["items"]
    assert unit_id in [item["deploymentUnitId"] for item in releases]


async def test_unknown_things_are_404_problems(client: httpx.AsyncClient, unit_id: str) -> None:
    """Missing operations, releases and components answer 404 problem details."""
    for path in (
        "/v1/operations/01890000-0000-7000-8000-000000000000",
        f"/v1/deployment-units/{unit_id}/environments/development",
        f"/v1/deployment-units/{unit_id}/environments/development/components/x",
        "/v1/nothing-here",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 404


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """/healthz says the process is alive; /readyz that the database is migrated."""
    assert (await client.get("/healthz")).json() == {
        "status": "ok",
        "database": None,
        "revision": None,
    }
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert ready["revision"]


async def test_a_descriptor_shaped_like_the_open_specification_deploys_as_written(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """A realistic YAML descriptor (repeated keys, ``kind: outputPort``, a workload without
    dependsOn, observability, data contracts), posted as YAML, deploys in dependency order, and
    each adapter gets the data product as written with its own component to provision."""
    # Unique ids: the session's mock adapter remembers components across tests.
    suffix = uuid.uuid4().hex[:8]
    text = (DESCRIPTORS / "dataproduct.open-spec.retail-orders.yaml").read_text(encoding="utf-8")
    text = text.replace(":retail:orders:2", f":retail:orders-{suffix}:2")
    document = yaml.safe_load(text)
    templates = sorted({item["infrastructureTemplateId"] for item in document["components"]})
    registry = write_registry(
        tmp_path,
        mock_adapter,
        extra="".join(
            f"  - infrastructureTemplateId: {template}\n    url: {mock_adapter}\n"
            for template in templates
        ),
    )
    server = service_factory(database_url, config=registry)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/v1/deployments", content=text, headers={"content-type": "application/yaml"}
        )
        assert response.status_code == 202, response.text
        operation = await finished_operation(client, response.json()["id"])
        state = await release(client, document["id"])

    assert operation["status"] == "SUCCEEDED"
    assert state["status"] == "DEPLOYED"
    ids = [item["id"] for item in document["components"]]
    landing, orders_sql = ids[0], ids[1]
    calls = {call["componentId"]: call for call in await calls_for(mock, set(ids), "provision")}
    assert calls.keys() == set(ids)
    assert calls[orders_sql]["receivedAt"] >= calls[landing]["answeredAt"]  # its dependsOn
    for component_id in ids:
        request = (await mock.get("/mock/requests", params={"componentId": component_id})).json()
        sent = yaml.safe_load(request["requests"][-1]["descriptor"])
        assert sent["componentIdToProvision"] == component_id
        assert sent["dataProduct"]["ownerGroup"] == document["ownerGroup"]
        assert [c["kind"] for c in sent["dataProduct"]["components"]] == [
            "outputport",
            "outputPort",
            "workload",
            "observability",
        ]
        sql_port = sent["dataProduct"]["components"][1]
        assert sql_port["dataContract"] == document["components"][1]["dataContract"]
