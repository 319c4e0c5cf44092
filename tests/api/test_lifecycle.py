"""Cancel, retry, timeouts and backpressure, through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

import httpx

from tests.conftest import ServiceFactory
from tests.support import (
    SLOW,
    assert_consistent,
    component,
    finished_operation,
    open_gate,
    submit,
    tasks_by_id,
    unit,
    wait_until,
)


async def test_cancel_stops_a_running_operation_promptly(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Waiting tasks are CANCELLED, a cut call leaves its component CORRUPT, what deployed
    stays DEPLOYED, the release says CORRUPT; cancelling again is 409. The slow call is held
    by a gate that never opens and the token never finishes: the operation can end only
    because cancel cut them."""
    slow, after, quick, polling = (f"{unit_id}:{n}" for n in ("slow", "after", "quick", "polling"))
    document = unit(
        unit_id,
        [
            component(slow, gate=f"{unit_id}:never-opened"),
            component(after, depends_on=[slow]),
            component(quick),
            component(polling, mode="async", neverFinish=True),
        ],
    )
    operation_id = await submit(client, document)

    async def under_way() -> bool:
        operation = tasks_by_id((await client.get(f"/v1/operations/{operation_id}")).json())
        return (
            operation[slow]["status"] == "RUNNING"
            and operation[polling]["status"] == "RUNNING"
            and operation[quick]["status"] == "SUCCEEDED"
        )

    await wait_until(under_way)
    response = await client.post(f"/v1/operations/{operation_id}/cancel")
    assert response.status_code == 202
    operation = await finished_operation(client, operation_id)

    tasks = tasks_by_id(operation)
    assert operation["status"] == "CANCELLED"
    assert tasks[slow]["status"] == tasks[polling]["status"] == "CANCELLED"
    assert tasks[after]["status"] == "CANCELLED"
    assert tasks[quick]["status"] == "SUCCEEDED"
    release = (await client.get(f"/v1/deployment-units/{unit_id}/environments/development")).json()
    states = {c["componentId"]: c["status"] for c in release["components"]}
    assert states == {slow: "CORRUPT", polling: "CORRUPT", after: "NOT_DEPLOYED", quick: "DEPLOYED"}
    assert release["status"] == "CORRUPT"
    again = await client.post(f"/v1/operations/{operation_id}/cancel")
    assert again.status_code == 409
    await assert_consistent(client, mock, unit_id)


async def test_a_pending_operation_is_cancelled_without_running_anything(
    database_url: str, service_factory: ServiceFactory, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """With one operation allowed to run, a queued one is cancelled before it starts."""
    server = service_factory(database_url, max_running_operations=1)
    gate = f"{unit_id}:gate"  # keeps the one slot taken until the queued one is cancelled
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        busy = await submit(client, unit(f"{unit_id}-busy", [component("x", gate=gate)]))
        queued_component = f"{unit_id}:queued"
        queued = await submit(client, unit(unit_id, [component(queued_component)]))
        assert (await client.get(f"/v1/operations/{queued}")).json()["status"] == "PENDING"

        cancelled = (await client.post(f"/v1/operations/{queued}/cancel")).json()
        assert cancelled["status"] == "CANCELLED"
        assert {t["status"] for t in cancelled["tasks"]} == {"CANCELLED"}
        await open_gate(mock, gate)
        assert (await finished_operation(client, busy))["status"] == "SUCCEEDED"
        release = (
            await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
        ).json()
        assert release["status"] == "NOT_DEPLOYED"
        assert release["version"] is None
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    assert queued_component not in {call["componentId"] for call in calls}


async def test_retry_runs_only_what_did_not_succeed(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """A retry is a new operation with the failed and skipped tasks only; it can succeed
    where the first failed, and the release ends DEPLOYED."""
    good, flaky, after = (f"{unit_id}:{n}" for n in ("good", "flaky", "after"))
    # The adapter answers 503 to the first five POSTs: more than one attempt's retries.
    document = unit(
        unit_id,
        [
            component(good),
            component(flaky, transientErrors=5),
            component(after, depends_on=[flaky]),
        ],
    )
    first = await finished_operation(client, await submit(client, document))
    assert first["status"] == "FAILED"

    response = await client.post(f"/v1/operations/{first['id']}/retry")
    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/operations/{response.json()['id']}"
    retried = await finished_operation(client, response.json()["id"])

    assert retried["retryOf"] == first["id"]
    assert retried["status"] == "SUCCEEDED"
    assert sorted(t["componentId"] for t in retried["tasks"]) == sorted([flaky, after])
    components = (await mock.get("/mock/components")).json()
    assert components[good]["provisionCount"] == 1
    release = (await client.get(f"/v1/deployment-units/{unit_id}/environments/development")).json()
    assert release["status"] == "DEPLOYED"
    await assert_consistent(client, mock, unit_id)


async def test_retry_is_refused_for_active_or_fully_successful_operations(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    gate = f"{unit_id}:gate"  # the operation is still active when the first retry is asked
    running = await submit(client, unit(unit_id, [component(f"{unit_id}:a", gate=gate)]))
    refused = await client.post(f"/v1/operations/{running}/retry")
    assert refused.status_code == 409
    assert "still" in refused.json()["detail"]
    await open_gate(mock, gate)
    await finished_operation(client, running)
    assert (await client.post(f"/v1/operations/{running}/retry")).status_code == 409


async def test_retry_is_refused_when_the_release_moved_on(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """A retried step whose dependency has since been undeployed would deploy on nothing."""
    base, broken = f"{unit_id}:base", f"{unit_id}:broken"
    document = unit(
        unit_id, [component(base), component(broken, depends_on=[base], fail="provision")]
    )
    failed = await finished_operation(client, await submit(client, document))
    undeploy = await client.post(
        "/v1/undeployments",
        json={
            "deploymentUnitId": unit_id,
            "environment": "development",
            "components": [base, broken],
        },
    )
    await finished_operation(client, undeploy.json()["id"])

    response = await client.post(f"/v1/operations/{failed['id']}/retry")
    assert response.status_code == 422
    assert "has run on this release since" in response.json()["errors"][0]["message"]


async def test_an_operation_past_its_time_budget_fails(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """PROVISIONER_OPERATION_TIMEOUT_SECONDS cuts what still runs; the error says so."""
    server = service_factory(database_url, operation_timeout_seconds=1.0)
    stuck = f"{unit_id}:stuck"
    document = unit(unit_id, [component(stuck, gate=f"{unit_id}:never-opened")])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        operation = await finished_operation(client, await submit(client, document))
    assert operation["status"] == "FAILED"
    assert "did not finish within 1 s" in operation["error"]
    assert "timed out" in tasks_by_id(operation)[stuck]["error"]["message"]


async def test_an_adapter_operation_past_its_timeout_fails_its_task(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """timeoutSeconds (1 s here) bounds POST plus polling: a token that never finishes and a
    sync answer slower than that both end FAILED saying so."""
    never, slow = f"{unit_id}:never", f"{unit_id}:slow"
    document = unit(
        unit_id,
        [
            component(never, template=SLOW, mode="async", neverFinish=True),
            component(slow, template=SLOW, gate=f"{unit_id}:never-opened"),
        ],
    )
    operation = await finished_operation(client, await submit(client, document))
    tasks = tasks_by_id(operation)
    for component_id in (never, slow):
        assert tasks[component_id]["status"] == "FAILED"
        assert "did not finish within 1 s" in tasks[component_id]["error"]["message"]
    await assert_consistent(client, mock, unit_id)


async def test_operations_beyond_the_limit_wait_and_run_in_submission_order(
    database_url: str, service_factory: ServiceFactory, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """With one operation at a time, the others wait PENDING and start in the order sent."""
    server = service_factory(database_url, max_running_operations=1)
    gate = f"{unit_id}:gate"  # nothing finishes before all three are submitted
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        ids = [
            await submit(client, unit(f"{unit_id}-{i}", [component(f"c{i}", gate=gate)]))
            for i in range(3)
        ]
        for waiting in ids[1:]:
            assert (await client.get(f"/v1/operations/{waiting}")).json()["status"] == "PENDING"
        await open_gate(mock, gate)
        finished = [await finished_operation(client, operation_id) for operation_id in ids]
    assert all(item["status"] == "SUCCEEDED" for item in finished)
    for earlier, later in itertools.pairwise(finished):
        assert later["startedAt"] >= earlier["finishedAt"]


async def test_a_deploy_cancelled_while_pending_leaves_the_release_as_it_was(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """A queued deploy of a new descriptor never ran: same status, version and members."""
    server = service_factory(database_url, max_running_operations=1)
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    release_path = f"/v1/deployment-units/{unit_id}/environments/development"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await finished_operation(client, await submit(client, unit(unit_id, [component(a)])))
        before = (await client.get(release_path)).json()
        blocker = await submit(
            client, unit(f"{unit_id}-blocker", [component("x", mode="async", neverFinish=True)])
        )
        await wait_until(
            lambda: _status_is(client, blocker, "RUNNING")  # the one slot is taken
        )
        pending = await submit(client, unit(unit_id, [component(a), component(b)], version="2.0.0"))
        assert (await client.post(f"/v1/operations/{pending}/cancel")).json()[
            "status"
        ] == "CANCELLED"
        after = (await client.get(release_path)).json()
        await client.post(f"/v1/operations/{blocker}/cancel")
    assert after["status"] == before["status"] == "DEPLOYED"
    assert after["version"] == before["version"] == "1.0.0"
    assert [c["componentId"] for c in after["components"]] == [a]


async def _status_is(client: httpx.AsyncClient, operation_id: str, status: str) -> bool:
    body = (await client.get(f"/v1/operations/{operation_id}")).json()
    return bool(body["status"] == status)


async def test_a_retry_is_refused_once_another_operation_has_run(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """Retrying an old deploy would roll the release back to its version; retrying an old
    undeploy would unprovision the system under components deployed since."""
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    old_deploy = await finished_operation(
        client,
        await submit(client, unit(unit_id, [component(a), component(b, transientErrors=5)])),
    )
    assert old_deploy["status"] == "FAILED"
    await finished_operation(
        client,
        await submit(
            client,
            unit(
                unit_id,
                [component(a, version="2.0.0"), component(b, version="2.0.0")],
                version="2.0.0",
            ),
        ),
    )
    refused = await client.post(f"/v1/operations/{old_deploy['id']}/retry")
    assert refused.status_code == 422
    assert "has run on this release since" in refused.json()["errors"][0]["message"]

    broken = f"{unit_id}:broken"
    await finished_operation(
        client,
        await submit(
            client, unit(unit_id, [component(broken, fail="unprovision")], version="3.0.0")
        ),
    )
    undeploy = (
        await client.post(
            "/v1/undeployments", json={"deploymentUnitId": unit_id, "environment": "development"}
        )
    ).json()["id"]
    assert (await finished_operation(client, undeploy))["status"] == "FAILED"
    await finished_operation(
        client, await submit(client, unit(unit_id, [component(a)], version="4.0.0"))
    )
    assert (await client.post(f"/v1/operations/{undeploy}/retry")).status_code == 422
