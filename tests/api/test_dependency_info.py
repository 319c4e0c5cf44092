"""What Tech Adapters are sent about other components, end to end over loopback: each
dependency's provisioning info (Tech Adapter API 2.6), privateInfo by least privilege, and the
unit-level template of real descriptors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import ServiceFactory
from tests.fixtures import DESCRIPTORS
from tests.support import (
    MOCK,
    SYSTEM,
    component,
    finished_operation,
    tasks_by_id,
    unit,
    write_registry,
)

OTHER = "urn:test:itm:other:0"  # a second template, served by the mock adapter too


async def run(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    operation = await finished_operation(client, response.json()["id"])
    assert operation["status"] == "SUCCEEDED", operation
    return operation


async def deploy(client: httpx.AsyncClient, document: dict[str, Any], **body: Any) -> None:
    await run(client, "/v1/deployments", {"descriptor": document, **body})


async def received(mock: httpx.AsyncClient, component_id: str) -> list[dict[str, Any]]:
    """The provision and unprovision requests the mock received about the component."""
    answer = await mock.get(f"/mock/components/{component_id}/received")
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["received"]
    return entries


async def last_request(mock: httpx.AsyncClient, component_id: str) -> dict[str, Any]:
    answer = await mock.get("/mock/requests", params={"componentId": component_id})
    request: dict[str, Any] = answer.json()["requests"][-1]
    return request


async def stored_public_info(
    client: httpx.AsyncClient, unit_id: str, component_id: str
) -> dict[str, Any]:
    answer = await client.get(
        f"/v1/deployment-units/{unit_id}/environments/development/components/{component_id}"
    )
    info: dict[str, Any] = answer.json()["info"]["publicInfo"]
    return info


def storage_and_port(unit_id: str, table: str) -> tuple[str, str, dict[str, Any]]:
    storage, port = f"{unit_id}:storage", f"{unit_id}:port"
    document = unit(
        unit_id,
        [
            component(
                storage,
                kind="storage",
                publicInfo={"table": table},
                privateInfo={"password": f"pw-{table}"},
            ),
            component(port, kind="outputport", depends_on=[storage]),
        ],
    )
    return storage, port, document


async def test_an_output_port_is_sent_the_info_its_storage_got_in_the_same_operation(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The port's provision (and later its unprovision) request carries, on the storage's
    entry of dataProduct.components, the public and private info the storage's provision
    returned earlier in the same operation; the storage itself depends on nothing."""
    storage, port, document = storage_and_port(unit_id, "orders_v1")
    await deploy(client, document)

    public = await stored_public_info(client, unit_id, storage)
    assert public["table"] == "orders_v1"
    expected = {
        storage: {
            "publicInfo": public,
            "privateInfo": {"mockSecret": f"secret-{storage}", "password": "pw-orders_v1"},
        }
    }
    [provision] = await received(mock, port)
    assert provision["dependencyInfo"] == expected
    assert [entry["dependencyInfo"] for entry in await received(mock, storage)] == [{}]
    validations = (
        await mock.get("/mock/calls", params={"action": "validate", "componentId": port})
    ).json()["calls"]
    assert [call["dependencyInfo"] for call in validations] == [{storage: None}]
    provisions = (
        await mock.get("/mock/calls", params={"action": "provision", "componentId": port})
    ).json()["calls"]
    assert [call["dependencyInfo"] for call in provisions] == [expected]
    sent = yaml.safe_load((await last_request(mock, port))["descriptor"])
    others = [c for c in sent["dataProduct"]["components"] if c["id"] != storage]
    assert all("info" not in c for c in others)  # only dependencies carry info

    await run(
        client,
        "/v1/undeployments",
        {"deploymentUnitId": unit_id, "environment": "development"},
    )
    unprovision = (await received(mock, port))[-1]
    assert unprovision["action"] == "unprovision"
    assert unprovision["dependencyInfo"] == expected


async def test_a_port_redeployed_alone_is_sent_its_storages_info_from_the_earlier_deploy(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Deploying only the port sends it the info of the storage's latest provision, made by
    an earlier operation; the storage is not provisioned again."""
    storage, port, document = storage_and_port(unit_id, "orders_v2")
    await deploy(client, document)
    public = await stored_public_info(client, unit_id, storage)

    await deploy(client, {**document, "version": "1.0.1"}, components=[port])

    first, second = await received(mock, port)
    assert len(await received(mock, storage)) == 1
    assert second["dependencyInfo"] == first["dependencyInfo"]
    assert second["dependencyInfo"][storage] == {
        "publicInfo": public,
        "privateInfo": {"mockSecret": f"secret-{storage}", "password": "pw-orders_v2"},
    }


def enriched_private(request: dict[str, Any], component_id: str) -> Any:
    """The privateInfo of a component in the request's latestEnrichedDescriptor."""
    enriched = yaml.safe_load(request["latestEnrichedDescriptor"])
    [entry] = [c for c in enriched["components"] if c["id"] == component_id]
    return entry["info"]["privateInfo"]


async def deploy_twice_with_two_templates(
    database_url: str, service_factory: ServiceFactory, mock_adapter: str, tmp_path: Path, **kw: Any
) -> tuple[str, str, str]:
    """Deploy, twice (so that latestEnrichedDescriptor has results), a unit of ``a`` (MOCK),
    ``b`` (OTHER, independent of ``a``) and ``c`` (OTHER, depending on ``a``)."""
    registry = write_registry(
        tmp_path,
        mock_adapter,
        extra=f"  - infrastructureTemplateId: {OTHER}\n    url: {mock_adapter}\n",
    )
    unit_id = f"urn:dmb:dp:test:private-{uuid.uuid4().hex[:8]}:0"
    a, b, c = (f"{unit_id}:{name}" for name in "abc")
    document = unit(
        unit_id,
        [
            component(a, template=MOCK),
            component(b, template=OTHER),
            component(c, template=OTHER, depends_on=[a]),
        ],
    )
    server = service_factory(database_url, config=registry, **kw)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await deploy(client, document)
        await deploy(client, document)
    return a, b, c


async def test_an_adapter_is_sent_the_private_info_of_its_own_components_and_dependencies(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """By default another template's adapter sees a component's privateInfo empty in
    latestEnrichedDescriptor; the component's own adapter sees it, and so does a dependent's
    adapter, in the dependency's entry of dataProduct.components."""
    a, b, c = await deploy_twice_with_two_templates(
        database_url, service_factory, mock_adapter, tmp_path
    )
    secret_a, secret_b = {"mockSecret": f"secret-{a}"}, {"mockSecret": f"secret-{b}"}

    to_a, to_b, to_c = [await last_request(mock, x) for x in (a, b, c)]
    assert enriched_private(to_a, a) == secret_a
    assert enriched_private(to_a, b) == {}
    assert enriched_private(to_b, a) == {}
    assert enriched_private(to_b, b) == secret_b
    assert enriched_private(to_c, a) == {}
    assert enriched_private(to_c, b) == secret_b  # the same template
    assert to_c["dependencyInfo"][a]["privateInfo"] == secret_a
    assert "secret-" + a not in to_b["descriptor"] + to_b["latestEnrichedDescriptor"]


async def test_sharing_private_info_sends_every_adapter_everything(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """PROVISIONER_SHARE_PRIVATE_INFO=true: every adapter sees every component's privateInfo,
    as the Tech Adapter API has it."""
    a, b, _ = await deploy_twice_with_two_templates(
        database_url, service_factory, mock_adapter, tmp_path, share_private_info=True
    )

    to_b = await last_request(mock, b)
    assert enriched_private(to_b, a) == {"mockSecret": f"secret-{a}"}


def telemetry(template: str | None) -> tuple[str, dict[str, Any], set[str]]:
    """The telemetry data product of the fixtures (unit template
    ``urn:dmb:itm:dataproduct-provisioner:1``), with ids of its own, and its component
    templates."""
    text = (DESCRIPTORS / "dataproduct.snapshot.telemetry.yaml").read_text(encoding="utf-8")
    text = text.replace(":vehicle-telemetry:3", f":vehicle-telemetry-{uuid.uuid4().hex[:8]}:3")
    document = yaml.safe_load(text)
    if template is not None:
        document["infrastructureTemplateId"] = template
    templates = {item["infrastructureTemplateId"] for item in document["components"]}
    return text if template is None else yaml.safe_dump(document), document, templates


async def start_for_telemetry(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    tmp_path: Path,
    templates: set[str],
) -> str:
    extra = "".join(
        f"  - infrastructureTemplateId: {template}\n    url: {mock_adapter}\n"
        for template in sorted(templates)
    )
    registry = write_registry(tmp_path, mock_adapter, extra=extra)
    return service_factory(database_url, config=registry).url


async def test_a_real_descriptors_unregistered_unit_template_makes_no_system_call(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """A real descriptor's unit-level ``urn:dmb:itm:dataproduct-provisioner:1``, registered
    nowhere, is no reason to refuse: the deploy succeeds, the system step calls no adapter
    (its event says why), and dry runs and validations agree."""
    text, document, templates = telemetry(None)
    unit_id = document["id"]
    url = await start_for_telemetry(
        database_url, service_factory, mock_adapter, tmp_path, templates
    )
    yaml_body = {"content": text, "headers": {"content-type": "application/yaml"}}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        plan = await client.post("/v1/deployments", params={"dryRun": "true"}, **yaml_body)
        assert plan.status_code == 200, plan.text
        validation = await client.post("/v1/validations", **yaml_body)
        assert validation.status_code == 200, validation.text
        response = await client.post("/v1/deployments", **yaml_body)
        assert response.status_code == 202, response.text
        operation = await finished_operation(client, response.json()["id"])
        events = (await client.get(f"/v1/operations/{operation['id']}/events")).json()["items"]

    assert operation["status"] == "SUCCEEDED"
    assert tasks_by_id(operation)[unit_id]["status"] == "SUCCEEDED"
    assert unit_id in [step["componentId"] for step in plan.json()["plan"]["steps"]]
    assert unit_id not in str(validation.json().get("components"))
    calls = (await mock.get("/mock/calls")).json()["calls"]
    assert [call for call in calls if call["componentId"] == unit_id] == []
    [note] = [
        e["detail"]["note"]
        for e in events
        if e["componentId"] == unit_id and e["newStatus"] == "SUCCEEDED"
    ]
    assert "urn:dmb:itm:dataproduct-provisioner:1" in note
    assert "made no call" in note


async def test_a_registered_unit_template_is_called_with_the_unit_descriptor(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """When the unit's own template is registered, the system step calls its adapter with the
    DATAPRODUCT_DESCRIPTOR, as before."""
    text, document, templates = telemetry(SYSTEM)
    unit_id = document["id"]
    url = await start_for_telemetry(
        database_url, service_factory, mock_adapter, tmp_path, templates
    )
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/v1/deployments", content=text, headers={"content-type": "application/yaml"}
        )
        assert response.status_code == 202, response.text
        operation = await finished_operation(client, response.json()["id"])

    assert operation["status"] == "SUCCEEDED"
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    [system] = [call for call in calls if call["componentId"] == unit_id]
    assert system["descriptorKind"] == "DATAPRODUCT_DESCRIPTOR"
