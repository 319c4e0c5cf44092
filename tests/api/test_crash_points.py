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
