"""The service purges on its own: with a tiny retention, an operation that no release names
any more disappears from the API, while the release and its last operation stay readable."""

from __future__ import annotations

import httpx

from tests.conftest import ServiceFactory
from tests.support import component, finished_operation, submit, unit, wait_until

# About a second: an operation ends, then is old enough to go.
TINY_RETENTION_DAYS = 1.0 / 86_400


async def test_the_periodic_purge_removes_old_operations_and_keeps_the_release(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    service = service_factory(
        database_url,
        retention_days=TINY_RETENTION_DAYS,
        retention_interval_seconds=0.2,
        retention_batch_size=1,
    )
    document = unit(unit_id, [component(f"{unit_id}:a"), component(f"{unit_id}:b")])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        first = await finished_operation(client, await submit(client, document))
        second = await finished_operation(client, await submit(client, document))
        assert (first["status"], second["status"]) == ("SUCCEEDED", "SUCCEEDED")

        async def first_is_gone() -> bool:
            response = await client.get(f"/v1/operations/{first['id']}")
            return response.status_code == 404

        await wait_until(first_is_gone)
        kept = await client.get(f"/v1/operations/{second['id']}")
        assert kept.status_code == 200
        assert kept.json()["tasks"]
        events = await client.get(f"/v1/operations/{second['id']}/events")
        assert events.json()["items"]
        release = await client.get(
            f"/v1/deployment-units/{unit_id}/environments/development",
            params={"includeDescriptor": "true"},
        )
        assert release.status_code == 200
        assert release.json()["lastOperationId"] == second["id"]
        assert release.json()["descriptor"]["id"] == unit_id
        listed = await client.get("/v1/operations", params={"deploymentUnitId": unit_id})
        assert [item["id"] for item in listed.json()["items"]] == [second["id"]]
