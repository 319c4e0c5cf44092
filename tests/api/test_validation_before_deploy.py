"""Validation as the first phase of every deploy, through the real service and the mock Tech
Adapter on loopback: every component's adapter validates it before anything is provisioned; an
invalid component (or an adapter that cannot say) fails the deploy with nothing touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServiceFactory
from tests.support import (
    DEAD_VALIDATED,
    LIMITED,
    SYSTEM,
    component,
    finished_operation,
    submit,
    tasks_by_id,
    unit,
    write_registry,
)

ASYNC = "urn:test:itm:async-validation:0"  # validates with /v2/validate (polled)
QUIET = "urn:test:itm:not-validated:0"  # validateBeforeDeploy: false


def registry(tmp_path: Path, mock_adapter: str) -> Path:
    """The test registry, with an adapter validating asynchronously and one not at all."""
    extra = f"""  - infrastructureTemplateId: {ASYNC}
    url: {mock_adapter}
    asyncValidation: true
  - infrastructureTemplateId: {QUIET}
    url: {mock_adapter}
    validateBeforeDeploy: false
"""
    return write_registry(tmp_path, mock_adapter, extra=extra)


async def calls(mock: httpx.AsyncClient, action: str, ids: set[str]) -> list[dict[str, Any]]:
    """The mock's log of ``action`` calls about the components ``ids``, in order."""
    answer = (await mock.get("/mock/calls", params={"action": action})).json()
    return [call for call in answer["calls"] if call["componentId"] in ids]


async def deploy(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    return await finished_operation(client, await submit(client, document))


async def release(client: httpx.AsyncClient, unit_id: str) -> dict[str, Any]:
    path = f"/v1/deployment-units/{unit_id}/environments/development"
    body: dict[str, Any] = (await client.get(path, params={"includeDescriptor": "true"})).json()
    return body


async def test_every_component_is_validated_before_the_first_provision(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Each component's adapter, and the unit's own (its template is registered), validates
    it once; every verdict is in before the first provision call; verdicts are shown on the
    tasks and in the events."""
    ids = {unit_id, *(f"{unit_id}:{name}" for name in ("a", "b", "c"))}
    document = unit(
        unit_id,
        [
            component(f"{unit_id}:a", validationLatencyMs=150),
            component(f"{unit_id}:b", depends_on=[f"{unit_id}:a"]),
            component(f"{unit_id}:c"),
        ],
        template=SYSTEM,
    )
    operation = await deploy(client, document)
    assert operation["status"] == "SUCCEEDED"
    validations = await calls(mock, "validate", ids)
    provisions = await calls(mock, "provision", ids)
    assert sorted(call["componentId"] for call in validations) == sorted(ids)
    assert max(c["answeredAt"] for c in validations) <= min(c["receivedAt"] for c in provisions)
    kinds = {call["componentId"]: call["descriptorKind"] for call in validations}
    assert kinds[unit_id] == "DATAPRODUCT_DESCRIPTOR"
    assert kinds[f"{unit_id}:a"] == "COMPONENT_DESCRIPTOR"
    for task in operation["tasks"]:
        assert task["validation"] == {"valid": True, "errors": []}
    events = (await client.get(f"/v1/operations/{operation['id']}/events")).json()["items"]
    validated = {e["componentId"] for e in events if "validation" in (e["detail"] or {})}
    assert validated == ids


async def test_an_invalid_component_stops_the_deploy_and_the_release_keeps_its_status(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """A deployed release, then a new version with an invalid component: no provision call at
    all, the invalid task FAILED with the adapter's reasons, the others SKIPPED, the operation
    FAILED; the release is still DEPLOYED at the old version, its components untouched."""
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    first = await deploy(client, unit(unit_id, [component(a), component(b, depends_on=[a])]))
    assert first["status"] == "SUCCEEDED"
    provisioned = len(await calls(mock, "provision", {a, b}))

    invalid = unit(
        unit_id,
        [
            component(a, version="2.0.0"),
            component(
                b, depends_on=[a], version="2.0.0", invalid=["bucket taken", "owner unknown"]
            ),
        ],
        version="2.0.0",
    )
    operation = await deploy(client, invalid)
    assert operation["status"] == "FAILED"
    assert operation["error"] == f"validation failed: 1 component(s) invalid: {b}"
    tasks = tasks_by_id(operation)
    assert tasks[b]["status"] == "FAILED"
    assert tasks[b]["attempts"] == 0
    assert tasks[b]["validation"] == {"valid": False, "errors": ["bucket taken", "owner unknown"]}
    assert "bucket taken; owner unknown" in tasks[b]["error"]["message"]
    assert tasks[a]["status"] == tasks[unit_id]["status"] == "SKIPPED"
    assert tasks[a]["validation"] == {"valid": True, "errors": []}
    assert len(await calls(mock, "provision", {a, b})) == provisioned

    after = await release(client, unit_id)
    assert after["status"] == "DEPLOYED"
    assert after["version"] == "1.0.0"
    assert after["descriptor"]["version"] == "1.0.0"
    for item in after["components"]:
        assert item["status"] == "DEPLOYED"
        assert item["version"] == "1.0.0"
        assert item["lastOperation"]["operationId"] == first["id"]
    assert after["lastOperationId"] == operation["id"]


async def test_a_refused_first_deploy_leaves_nothing_corrupt(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    operation = await deploy(client, unit(unit_id, [component(f"{unit_id}:a", invalid="no")]))
    assert operation["status"] == "FAILED"
    after = await release(client, unit_id)
    assert after["status"] == "NOT_DEPLOYED"
    assert after["version"] is None
    assert after["descriptor"] is None


async def test_a_refusal_keeps_a_corrupt_release_corrupt(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """A release left CORRUPT by a failed provision stays CORRUPT after a refused deploy."""
    a = f"{unit_id}:a"
    failed = await deploy(client, unit(unit_id, [component(a, fail="provision")]))
    assert failed["status"] == "FAILED"
    assert (await release(client, unit_id))["status"] == "CORRUPT"
    refused = await deploy(client, unit(unit_id, [component(a, invalid="still wrong")]))
    assert refused["status"] == "FAILED"
    assert (await release(client, unit_id))["status"] == "CORRUPT"


async def test_an_adapter_that_cannot_validate_refuses_the_deploy(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """A validate call answered 500, or an adapter that cannot be reached, is no verdict."""
    broken, unreachable, fine = (f"{unit_id}:{n}" for n in ("broken", "unreachable", "fine"))
    operation = await deploy(
        client,
        unit(
            unit_id,
            [
                component(broken, validationFail=500),
                component(unreachable, template=DEAD_VALIDATED),
                component(fine),
            ],
        ),
    )
    assert operation["status"] == "FAILED"
    tasks = tasks_by_id(operation)
    assert not tasks[broken]["validation"]["valid"]
    assert "could not validate" in tasks[broken]["validation"]["errors"][0]
    assert "500" in tasks[broken]["validation"]["errors"][0]
    assert "could not validate" in tasks[unreachable]["validation"]["errors"][0]
    assert tasks[fine]["status"] == "SKIPPED"
    assert await calls(mock, "provision", {broken, unreachable, fine}) == []


async def test_an_adapter_registered_for_async_validation_is_polled(
    database_url: str,
    service_factory: ServiceFactory,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    mock_adapter: str,
    unit_id: str,
) -> None:
    """``asyncValidation: true``: /v2/validate, then its status until final; a FAILED status
    (no verdict) refuses the deploy."""
    service = service_factory(database_url, config=registry(tmp_path, mock_adapter))
    polled, failing = f"{unit_id}:polled", f"{unit_id}:failing"
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        good = await deploy(
            client, unit(unit_id, [component(polled, template=ASYNC, validationPolls=2)])
        )
        assert good["status"] == "SUCCEEDED"
        assert len(await calls(mock, "validate-status", {polled})) >= 3
        bad = await deploy(
            client,
            unit(f"{unit_id}-2", [component(failing, template=ASYNC, validationStatus="FAILED")]),
        )
    assert bad["status"] == "FAILED"
    verdict = tasks_by_id(bad)[failing]["validation"]
    assert verdict == {
        "valid": False,
        "errors": ["the Tech Adapter could not validate the request"],
    }


async def test_validation_can_be_turned_off_for_the_service(
    sqlite_url: str, service_factory: ServiceFactory, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """``PROVISIONER_VALIDATE_BEFORE_DEPLOY=false``: no validate call; provisioning as before."""
    service = service_factory(sqlite_url, validate_before_deploy=False)
    a = f"{unit_id}:a"
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation = await deploy(client, unit(unit_id, [component(a, invalid="never asked")]))
    assert operation["status"] == "SUCCEEDED"
    assert tasks_by_id(operation)[a]["validation"] is None
    assert await calls(mock, "validate", {a}) == []


async def test_validation_can_be_turned_off_for_one_adapter(
    sqlite_url: str,
    service_factory: ServiceFactory,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    mock_adapter: str,
    unit_id: str,
) -> None:
    """``validateBeforeDeploy: false`` in the registry: that adapter is not asked; others are."""
    service = service_factory(sqlite_url, config=registry(tmp_path, mock_adapter))
    quiet, checked = f"{unit_id}:quiet", f"{unit_id}:checked"
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation = await deploy(
            client,
            unit(
                unit_id, [component(quiet, template=QUIET, invalid="not asked"), component(checked)]
            ),
        )
    assert operation["status"] == "SUCCEEDED"
    assert [call["componentId"] for call in await calls(mock, "validate", {quiet, checked})] == [
        checked
    ]


async def test_an_undeploy_is_not_validated(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    a = f"{unit_id}:a"
    assert (await deploy(client, unit(unit_id, [component(a)])))["status"] == "SUCCEEDED"
    before = len(await calls(mock, "validate", {a}))
    response = await client.post(
        "/v1/undeployments", json={"deploymentUnitId": unit_id, "environment": "development"}
    )
    assert response.status_code == 202
    operation = await finished_operation(client, response.json()["id"])
    assert operation["status"] == "SUCCEEDED"
    assert len(await calls(mock, "validate", {a})) == before
    assert all(task["validation"] is None for task in operation["tasks"])


async def test_validation_calls_respect_an_adapter_s_max_concurrency(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The adapter registered with maxConcurrency 2 never has more than 2 validations at once."""
    ids = {f"{unit_id}:{index}" for index in range(5)}
    document = unit(
        unit_id,
        [component(cid, template=LIMITED, validationLatencyMs=200) for cid in sorted(ids)],
    )
    assert (await deploy(client, document))["status"] == "SUCCEEDED"
    validations = await calls(mock, "validate", ids)
    moments = sorted(
        [(call["receivedAt"], 1) for call in validations]
        + [(call["answeredAt"], -1) for call in validations]
    )
    in_flight, peak = 0, 0
    for _, step in moments:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 2


async def test_the_unit_s_own_adapter_can_refuse_the_deploy(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The system step is validated when the unit's template is registered: its verdict counts."""
    a = f"{unit_id}:a"
    document = unit(
        unit_id, [component(a)], template=SYSTEM, specific={"mock": {"invalid": "unit says no"}}
    )
    operation = await deploy(client, document)
    assert operation["status"] == "FAILED"
    tasks = tasks_by_id(operation)
    assert tasks[unit_id]["validation"] == {"valid": False, "errors": ["unit says no"]}
    assert tasks[a]["status"] == "SKIPPED"
    assert await calls(mock, "provision", {unit_id, a}) == []
