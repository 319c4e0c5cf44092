"""The Tech Adapter calls provisioner passes through: validate, reverse provisioning (ACL updates
are operations: test_acl_and_repair.py)."""

from __future__ import annotations

import httpx

from tests.support import SYSTEM, component, unit


async def test_validation_asks_every_adapter_and_stores_nothing(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Each component's adapter (and the unit's own) validates its descriptor; one invalid
    component makes the whole answer invalid; nothing is deployed."""
    good, bad = f"{unit_id}:good", f"{unit_id}:bad"
    document = unit(
        unit_id, [component(good), component(bad, invalid="no such table")], template=SYSTEM
    )
    response = await client.post("/v1/validations", json={"descriptor": document})

    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    results = {item["componentId"]: item for item in body["components"]}
    assert results[unit_id]["valid"] is True
    assert results[good] == {"componentId": good, "valid": True, "errors": []}
    assert results[bad]["valid"] is False
    assert any("no such table" in error for error in results[bad]["errors"])
    assert (await client.get("/v1/operations", params={"deploymentUnitId": unit_id})).json()[
        "items"
    ] == []


async def test_an_invalid_descriptor_is_refused_before_any_adapter_is_asked(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/validations", json={"descriptor": unit("urn:x", [component("a", depends_on=["a"])])}
    )
    assert response.status_code == 422


async def test_reverse_provisioning_returns_the_adapter_s_updates(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/reverse-provisioning",
        json={
            "infrastructureTemplateId": "urn:test:itm:mock:0",
            "useCaseTemplateId": "urn:dmb:utm:op-standard:0.0.0",
            "environment": "development",
            "params": {"table": "orders"},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["updates"]
    unknown = await client.post(
        "/v1/reverse-provisioning",
        json={
            "infrastructureTemplateId": "urn:test:itm:unknown:0",
            "useCaseTemplateId": "u",
            "environment": "development",
        },
    )
    assert unknown.status_code == 422


async def test_an_adapter_error_on_a_pass_through_call_is_a_502_problem(
    client: httpx.AsyncClient,
) -> None:
    """The adapter's own answer is carried in the problem's ``adapterError``."""
    response = await client.post(
        "/v1/reverse-provisioning",
        json={
            "infrastructureTemplateId": "urn:test:itm:dead:0",
            "useCaseTemplateId": "u",
            "environment": "development",
        },
    )
    assert response.status_code == 502
    body = response.json()
    assert body["type"].endswith("adapter-error")
    assert "cannot reach" in body["adapterError"]["message"]
