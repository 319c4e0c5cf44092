"""A server killed mid-deployment and restarted finishes the deployment without repeating
what had succeeded: a task with an adapter token resumes polling it, and only a task whose
call was in flight is sent again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import component, finished_operation, unit, wait_until, write_registry

pytestmark = pytest.mark.slow


async def test_a_killed_server_resumes_the_deployment_after_restart(
    database_url: str,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """SIGKILL with one task done, one sync call in flight, one async task polling."""
    done, inflight, polling, after = (
        f"{unit_id}:{n}" for n in ("done", "inflight", "polling", "after")
    )
    document = unit(
        unit_id,
        [
            component(done),
            component(inflight, depends_on=[done], latencyMs=2500),
            component(polling, mode="async", latencyMs=2500, polls=1),
            component(after, depends_on=[inflight, polling]),
        ],
    )
    settings = {
        "database_url": database_url,
        "registry": write_registry(tmp_path, mock_adapter),
        "log": tmp_path / "service.log",
        "replica_id": "restart-test",
    }
    first = ServiceProcess(**settings).start()
    processes.append(first)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        operation_id = (await client.post("/v1/deployments", json={"descriptor": document})).json()[
            "id"
        ]

        async def mid_flight() -> bool:
            tasks = {
                t["componentId"]: t
                for t in (await client.get(f"/v1/operations/{operation_id}")).json()["tasks"]
            }
            events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
            has_token = any(
                e["componentId"] == polling and "token" in (e["detail"] or {}) for e in events
            )
            return (
                tasks[done]["status"] == "SUCCEEDED"
                and tasks[inflight]["status"] == "RUNNING"
                and has_token
            )

        await wait_until(mid_flight)
    first.kill()

    second = ServiceProcess(**settings).start()
    processes.append(second)
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        operation = await finished_operation(client, operation_id)
        release = (
            await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
        ).json()

    assert operation["status"] == "SUCCEEDED"
    assert release["status"] == "DEPLOYED"
    posts = await _provision_posts(mock, {done, inflight, polling, after})
    assert posts[done] == 1  # succeeded before the kill: never sent again
    assert posts[polling] == 1  # had a token: polling resumed, not re-sent
    assert posts[inflight] == 2  # its call was in flight: sent again
    assert posts[after] == 1
    attempts = {t["componentId"]: t["attempts"] for t in operation["tasks"]}
    assert attempts[inflight] == 2
    assert attempts[done] == attempts[polling] == 1


async def _provision_posts(mock: httpx.AsyncClient, ids: set[str]) -> dict[str, Any]:
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    counts = dict.fromkeys(ids, 0)
    for call in calls:
        if call["componentId"] in ids:
            counts[call["componentId"]] += 1
    return counts
