"""A server killed while a deploy is being validated resumes the validation after restart:
the verdicts already recorded stand, only the adapters still validating are asked again, and
nothing is provisioned before every verdict is in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import component, finished_operation, unit, wait_until, write_registry

pytestmark = pytest.mark.slow


async def test_a_killed_server_resumes_the_validation_after_restart(
    database_url: str,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    quick, other, slow = (f"{unit_id}:{name}" for name in ("quick", "other", "slow"))
    document = unit(
        unit_id,
        [
            component(quick),
            component(other, depends_on=[quick]),
            component(slow, validationLatencyMs=3000),
        ],
    )
    settings = {
        "database_url": database_url,
        "registry": write_registry(tmp_path, mock_adapter),
        "log": tmp_path / "service.log",
        "replica_id": "validation-restart",
    }
    first = ServiceProcess(**settings).start()
    processes.append(first)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        response = await client.post("/v1/deployments", json={"descriptor": document})
        operation_id = response.json()["id"]

        async def two_verdicts_recorded() -> bool:
            events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
            validated = {e["componentId"] for e in events if "validation" in (e["detail"] or {})}
            return validated == {quick, other}

        await wait_until(two_verdicts_recorded)
    first.kill()
    assert await _count(mock, "provision", {quick, other, slow}) == dict.fromkeys(
        (quick, other, slow), 0
    )

    second = ServiceProcess(**settings).start()
    processes.append(second)
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        operation = await finished_operation(client, operation_id)
    assert operation["status"] == "SUCCEEDED"
    validations = await _count(mock, "validate", {quick, other, slow})
    assert validations[quick] == validations[other] == 1  # recorded: not asked again
    assert validations[slow] == 2  # in flight when killed: asked again
    assert await _count(mock, "provision", {quick, other, slow}) == dict.fromkeys(
        (quick, other, slow), 1
    )
    verdicts = {task["componentId"]: task["validation"] for task in operation["tasks"]}
    assert verdicts.pop(unit_id) is None  # the unit names no adapter of its own: not asked
    assert all(verdict == {"valid": True, "errors": []} for verdict in verdicts.values())


async def _count(mock: httpx.AsyncClient, action: str, ids: set[str]) -> dict[str, int]:
    calls = (await mock.get("/mock/calls", params={"action": action})).json()["calls"]
    counts = dict.fromkeys(ids, 0)
    for call in calls:
        if call["componentId"] in ids:
            counts[call["componentId"]] += 1
    return counts
