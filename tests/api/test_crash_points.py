"""The provisioner killed at each boundary that matters for recovery, then restarted: the
deployment completes, nothing succeeded is repeated, and the adapter's view matches."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import (
    assert_consistent,
    component,
    finished_operation,
    submit,
    unit,
    write_registry,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("point", "mode", "posts_of_target"),
    [
        # The start is recorded but the call never left: sent once, after the restart.
        pytest.param("before-call", "sync", 1, id="before-call"),
        # The adapter acted but its answer was lost: the call is sent again (idempotent).
        pytest.param("after-call", "sync", 2, id="after-call"),
        # The token was recorded: the restarted process polls it, the POST is not repeated.
        pytest.param("while-polling", "async", 1, id="while-polling"),
    ],
)
async def test_killed_at_a_boundary_and_restarted(
    database_url: str,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
    point: str,
    mode: str,
    posts_of_target: int,
) -> None:
    first, target, last = (f"{unit_id}:{name}" for name in ("first", "target", "last"))
    document = unit(
        unit_id,
        [
            component(first),
            component(target, depends_on=[first], mode=mode, latencyMs=200),
            component(last, depends_on=[target]),
        ],
    )
    settings = {
        "database_url": database_url,
        "registry": write_registry(tmp_path, mock_adapter),
        "log": tmp_path / "service.log",
        "replica_id": "crash-test",
    }
    doomed = ServiceProcess(**settings, failpoints=f"{point}={target}").start()
    processes.append(doomed)
    async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as client:
        operation_id = await submit(client, document)
    assert doomed.wait_exit() == -9  # it killed itself at the failpoint

    restarted = ServiceProcess(**settings).start()
    processes.append(restarted)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
        operation = await finished_operation(client, operation_id)
        assert operation["status"] == "SUCCEEDED"
        await assert_consistent(client, mock, unit_id)

    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    posts = {
        cid: sum(call["componentId"] == cid for call in calls) for cid in (first, target, last)
    }
    assert posts == {first: 1, target: posts_of_target, last: 1}


async def test_an_acl_update_killed_after_its_call_is_sent_again_on_restart(
    database_url: str,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """An UPDATE_ACL is recovered like a deploy: the process dies once the adapter granted
    access but before the answer was recorded; the restarted one claims the operation, sends
    the (idempotent) grant again and records it, and the component stays DEPLOYED."""
    port = f"{unit_id}:port"
    settings = {
        "database_url": database_url,
        "registry": write_registry(tmp_path, mock_adapter),
        "log": tmp_path / "service.log",
        "replica_id": "crash-test",
    }
    first = ServiceProcess(**settings).start()
    processes.append(first)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        await finished_operation(client, await submit(client, unit(unit_id, [component(port)])))
    first.stop()

    doomed = ServiceProcess(**settings, failpoints=f"after-call={port}").start()
    processes.append(doomed)
    acl = f"/v1/deployment-units/{unit_id}/environments/development/components/{port}/acl"
    async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as client:
        answer = await client.post(acl, json={"refs": ["user:alice"]})
        assert answer.status_code == 202, answer.text
    assert doomed.wait_exit() == -9

    restarted = ServiceProcess(**settings).start()
    processes.append(restarted)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
        operation = await finished_operation(client, answer.json()["id"])
        assert operation["status"] == "SUCCEEDED", operation
        assert operation["tasks"][0]["attempts"] == 2
        release = (
            await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
        ).json()
    (shown,) = [item for item in release["components"] if item["componentId"] == port]
    assert (shown["status"], shown["refs"]) == ("DEPLOYED", ["user:alice"])
    calls = (await mock.get("/mock/calls", params={"action": "updateacl"})).json()["calls"]
    assert sum(call["componentId"] == port for call in calls) == 2
