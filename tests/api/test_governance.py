"""Policies, dry runs and promotion through the real service on loopback, with the example
policies (``examples/policies``) and the mock Tech Adapter."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ServiceFactory
from tests.processes import ServiceProcess
from tests.streams import scrape, value
from tests.support import MOCK, component, finished_operation, unit, write_registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def product(unit_id_suffix: str) -> dict[str, Any]:
    """The example data product, under a unit id of its own (the id's name part), with every
    component on the mock adapter and quick."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "data-product.yaml").read_text())
    old = document["id"]
    name = f"sales-analytics-{unit_id_suffix}"
    document["id"] = f"urn:dmb:dp:sales:{name}:0"
    document.pop("infrastructureTemplateId")
    for item in document["components"]:
        item["id"] = item["id"].replace("sales-analytics", name)
        item["dependsOn"] = [dep.replace("sales-analytics", name) for dep in item["dependsOn"]]
        item["infrastructureTemplateId"] = MOCK
        item["specific"]["mock"] = {}
    assert old != document["id"]
    return document


@pytest.fixture
def suffix(unit_id: str) -> str:
    return unit_id.rsplit("-", 1)[-1].split(":", maxsplit=1)[0]


@pytest.fixture
async def governed(
    database_url: str, service_factory: ServiceFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the service with the example policies."""
    service = service_factory(database_url, policies=EXAMPLES / "policies")
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        yield http


def problem_messages(response: httpx.Response) -> list[tuple[str, str]]:
    return [(item["path"], item["message"]) for item in response.json().get("errors") or []]


# --- policies ----------------------------------------------------------------------------------


async def test_a_deploy_the_policies_deny_is_refused_with_each_message(
    governed: httpx.AsyncClient, suffix: str
) -> None:
    """422, each message with its policy; nothing is stored."""
    document = product(suffix)
    del document["dataProductOwner"]
    port = document["components"][4]
    del port["dataContract"]
    response = await governed.post("/v1/deployments", json={"descriptor": document})
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("policy-denied")
    assert body["title"] == "Refused by policy"
    assert set(problem_messages(response)) == {
        ("provisioner.dataproduct", "dataProductOwner is required (a non-empty string)"),
        (
            "provisioner.dataproduct",
            f"output port {port['id']} declares no data contract (dataContract.schema)",
        ),
    }
    listing = await governed.get("/v1/operations", params={"deploymentUnitId": document["id"]})
    assert listing.json()["items"] == []
    text = await scrape(governed)
    assert value(text, "provisioner_policy_denials_total", policy="provisioner.dataproduct") == 1


async def test_policy_warnings_are_stored_with_the_operation(
    governed: httpx.AsyncClient, suffix: str
) -> None:
    """Merged with the loader's own (a key written twice with the same value), in the 202 and
    when the operation is read again."""
    document = product(suffix)
    del document["description"]
    text = yaml.safe_dump(document, sort_keys=False)
    text = text.replace("\nname: ", "\nkind: dataproduct\nname: ", 1)  # a repeated key
    response = await governed.post(
        "/v1/deployments", content=text, headers={"content-type": "application/yaml"}
    )
    assert response.status_code == 202, response.text
    expected = [
        ("provisioner.dataproduct", "the data product has no description"),
    ]
    submitted = [(w["path"], w["message"]) for w in response.json()["warnings"]]
    assert submitted[-1:] == expected
    assert any(path == "descriptor.kind" for path, _ in submitted)
    operation = await finished_operation(governed, response.json()["id"])
    assert [(w["path"], w["message"]) for w in operation["warnings"]] == submitted
    assert operation["status"] == "SUCCEEDED"


async def test_production_data_is_not_removed(governed: httpx.AsyncClient, suffix: str) -> None:
    """The example policy: an undeploy in production with removeData is refused; without it
    the undeploy goes ahead. The policy reads the target environment (promotion)."""
    document = product(suffix)
    deployed = await governed.post(
        "/v1/deployments", json={"descriptor": document, "environment": "production"}
    )
    assert deployed.status_code == 202, deployed.text
    assert (await finished_operation(governed, deployed.json()["id"]))["status"] == "SUCCEEDED"
    request = {"deploymentUnitId": document["id"], "environment": "production"}
    refused = await governed.post("/v1/undeployments", json={**request, "removeData": True})
    assert refused.status_code == 422
    assert problem_messages(refused) == [
        (
            "provisioner.production",
            "removeData is not allowed in production: undeploy without it, and delete data "
            "deliberately",
        )
    ]
    planned = await governed.post(
        "/v1/undeployments", params={"dryRun": "true"}, json={**request, "removeData": True}
    )
    assert planned.status_code == 422
    kept = await governed.post("/v1/undeployments", json=request)
    assert kept.status_code == 202


async def test_validations_report_the_policies_and_the_adapters(
    governed: httpx.AsyncClient, suffix: str
) -> None:
    """POST /v1/validations: every denial, warning and adapter verdict at once; valid false."""
    document = product(suffix)
    del document["description"]
    document["version"] = "0.3"
    document["components"][0]["specific"]["mock"] = {"invalid": "bucket taken"}
    response = await governed.post(
        "/v1/validations", json={"descriptor": document, "environment": "qa"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["valid"] is False
    assert report["environment"] == "qa"
    assert report["denials"] == [
        {"path": "provisioner.dataproduct", "message": "version 0.3 is not major.minor.patch"}
    ]
    assert report["warnings"] == [
        {"path": "provisioner.dataproduct", "message": "the data product has no description"}
    ]
    invalid = [item for item in report["components"] if not item["valid"]]
    assert invalid == [
        {
            "componentId": document["components"][0]["id"],
            "valid": False,
            "errors": ["bucket taken"],
        }
    ]


async def test_broken_policies_stop_the_service_at_start(
    sqlite_url: str, tmp_path: Path, mock_adapter: str
) -> None:
    """``provisioner serve`` exits, naming the file and line of the problem."""
    policies = tmp_path / "policies"
    policies.mkdir()
    broken = policies / "broken.rego"
    broken.write_text(
        "package provisioner.broken\nimport rego.v1\n\n"
        'deny contains msg if {\n    input.x ==\n    msg := "a"\n}\n'
    )
    service = ServiceProcess(
        database_url=sqlite_url,
        registry=write_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
        policies=str(policies),
    )
    with pytest.raises(RuntimeError, match="the service exited"):
        service.start()
    assert service.wait_exit() != 0
    assert f"{broken}:5:5: Unable to unify due to cycle" in service.log.read_text()


# --- dry runs ----------------------------------------------------------------------------------


async def test_a_dry_run_plans_without_storing_or_calling_anything(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    document = unit(unit_id, [component(a), component(b, depends_on=[a], version="2.0.0")])
    response = await client.post(
        "/v1/deployments", params={"dryRun": "true"}, json={"descriptor": document}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["warnings"] == []
    plan = answer["plan"]
    assert (plan["type"], plan["deploymentUnitId"], plan["environment"], plan["version"]) == (
        "DEPLOY",
        unit_id,
        "development",
        "1.0.0",
    )
    assert plan["steps"] == [
        _step(unit_id, [], "CREATE", target="1.0.0"),
        _step(a, [unit_id], "CREATE", target="1.0.0"),
        _step(b, [a], "CREATE", target="2.0.0"),
    ]
    listing = await client.get("/v1/operations", params={"deploymentUnitId": unit_id})
    assert listing.json()["items"] == []
    path = f"/v1/deployment-units/{unit_id}/environments/development"
    assert (await client.get(path)).status_code == 404
    seen = (await mock.get("/mock/calls")).json()["calls"]
    assert not [call for call in seen if (call["componentId"] or "").startswith(unit_id)]


def _step(
    component_id: str,
    depends_on: list[str],
    change: str,
    *,
    action: str = "PROVISION",
    status: str = "NOT_DEPLOYED",
    current: str | None = None,
    target: str | None = None,
) -> dict[str, Any]:
    return {
        "componentId": component_id,
        "action": action,
        "dependsOn": depends_on,
        "change": change,
        "currentStatus": status,
        "currentVersion": current,
        "targetVersion": target,
    }


async def test_a_dry_run_shows_what_changed_since_the_last_deploy(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """UNCHANGED for the same version and content, UPDATE for a new version or new content,
    CREATE for a new component; an undeploy's dry run DELETEs in reverse order."""
    a, b, c = (f"{unit_id}:{n}" for n in "abc")
    first = unit(unit_id, [component(a), component(b, depends_on=[a])])
    operation = await finished_operation(client, await _submit(client, first))
    assert operation["status"] == "SUCCEEDED"

    second = copy.deepcopy(first)
    second["components"][1]["specific"] = {"bucket": "new"}
    second["components"].append(component(c, version="3.0.0"))
    response = await client.post(
        "/v1/deployments", params={"dryRun": "true"}, json={"descriptor": second}
    )
    steps = {step["componentId"]: step for step in response.json()["plan"]["steps"]}
    assert {cid: step["change"] for cid, step in steps.items()} == {
        unit_id: "UNCHANGED",
        a: "UNCHANGED",
        b: "UPDATE",
        c: "CREATE",
    }
    assert steps[b]["currentStatus"] == "DEPLOYED"
    assert (steps[b]["currentVersion"], steps[b]["targetVersion"]) == ("1.0.0", "1.0.0")

    undeploy = await client.post(
        "/v1/undeployments",
        params={"dryRun": "true"},
        json={"deploymentUnitId": unit_id, "environment": "development"},
    )
    assert undeploy.status_code == 200
    assert undeploy.json()["plan"]["steps"] == [
        _step(b, [], "DELETE", action="UNPROVISION", status="DEPLOYED", current="1.0.0"),
        _step(a, [b], "DELETE", action="UNPROVISION", status="DEPLOYED", current="1.0.0"),
        _step(unit_id, [a, b], "DELETE", action="UNPROVISION", status="DEPLOYED", current="1.0.0"),
    ]


async def _submit(client: httpx.AsyncClient, document: dict[str, Any]) -> str:
    response = await client.post("/v1/deployments", json={"descriptor": document})
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["id"]
    return operation_id


async def test_a_dry_run_meets_the_checks_of_the_real_request(
    client: httpx.AsyncClient, unit_id: str
) -> None:
    """Conflicts (409), subsets that cannot stand alone and an invalid descriptor (422), a
    dryRun that is not a boolean (422)."""
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    slow = unit(unit_id, [component(a, latencyMs=1500)])
    running = await _submit(client, slow)
    dry = {"dryRun": "true"}
    conflict = await client.post("/v1/deployments", params=dry, json={"descriptor": slow})
    assert conflict.status_code == 409
    assert conflict.json()["operationId"] == running
    await finished_operation(client, running)

    subset = await client.post(
        "/v1/deployments",
        params=dry,
        json={
            "descriptor": unit(f"{unit_id}-2", [component(a), component(b, depends_on=[a])]),
            "components": [b],
        },
    )
    assert subset.status_code == 422
    cycle = await client.post(
        "/v1/deployments",
        params=dry,
        json={"descriptor": unit(f"{unit_id}-3", [component(a, depends_on=[a])])},
    )
    assert cycle.status_code == 422
    not_a_flag = await client.post(
        "/v1/deployments", params={"dryRun": "yes"}, json={"descriptor": slow}
    )
    assert not_a_flag.status_code == 422
    nothing = await client.post(
        "/v1/undeployments",
        params=dry,
        json={"deploymentUnitId": f"{unit_id}-4", "environment": "development"},
    )
    assert nothing.status_code == 404


# --- promotion ---------------------------------------------------------------------------------


async def test_a_release_is_promoted_with_the_same_file(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The descriptor says development; deployed to qa it becomes qa's release, the adapters
    are sent environment qa, and the operation's first event says it was promoted."""
    a = f"{unit_id}:a"
    document = unit(unit_id, [component(a)])
    response = await client.post(
        "/v1/deployments", params={"environment": "qa"}, json={"descriptor": document}
    )
    assert response.status_code == 202, response.text
    operation = await finished_operation(client, response.json()["id"])
    assert (operation["status"], operation["environment"]) == ("SUCCEEDED", "qa")
    sent = (await mock.get("/mock/requests", params={"componentId": a})).json()["requests"]
    provisions = [item for item in sent if item["action"] == "provision"]
    assert provisions
    for item in provisions:
        assert yaml.safe_load(item["descriptor"])["dataProduct"]["environment"] == "qa"
    events = (await client.get(f"/v1/operations/{operation['id']}/events")).json()["items"]
    assert events[0]["newStatus"] == "PENDING"
    assert events[0]["detail"]["promotedFrom"] == "development"
    assert events[0]["detail"]["environment"] == "qa"
    qa = await client.get(f"/v1/deployment-units/{unit_id}/environments/qa")
    assert qa.json()["status"] == "DEPLOYED"
    development = await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
    assert development.status_code == 404
