"""A server killed mid-deployment and restarted finishes the deployment without repeating
what had succeeded: a task with an adapter token resumes polling it, and only a task whose
call was in flight is sent again.

The calls that must still be in flight at the kill are held by a mock adapter gate until the
test opens it, so the state at the kill does not depend on how quickly the test reacts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import (
    calls_received,
    component,
    finished_operation,
    open_gate,
    unit,
    wait_until,
    write_registry,
)

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
    gate = f"{unit_id}:gate"
    document = unit(
        unit_id,
        [
            component(done),
            component(inflight, depends_on=[done], gate=gate),
            component(polling, mode="async", polls=1, gate=gate),
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
                and has_token
                and await calls_received(mock, inflight) == 1  # sent, held by the gate
            )

        await wait_until(mid_flight)
    first.kill()
    await open_gate(mock, gate)

    second = ServiceProcess(**settings).start()
    processes.append(second)
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        operation = await finished_operation(client, operation_id)
        release = (
            await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
        ).json()

    assert operation["status"] == "SUCCEEDED"
    assert release["status"] == "DEPLOYED"
    posts = {cid: await calls_received(mock, cid) for cid in (done, inflight, polling, after)}
    assert posts[done] == 1  # succeeded before the kill: never sent again
    assert posts[polling] == 1  # had a token: polling resumed, not re-sent
    assert posts[inflight] == 2  # its call was in flight: sent again
    assert posts[after] == 1
    attempts = {t["componentId"]: t["attempts"] for t in operation["tasks"]}
    assert attempts[inflight] == 2
    assert attempts[done] == attempts[polling] == 1
