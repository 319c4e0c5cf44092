"""PostgreSQL restarted during a deployment: the service reports the outage on /readyz,
reconnects when the database is back, and the deployment completes with nothing lost."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres_cluster import PrivateCluster, postgres_binaries
from tests.processes import ServiceProcess
from tests.support import (
    calls_received,
    component,
    finished_operation,
    open_gate,
    submit,
    unit,
    wait_until,
    write_registry,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are needed under CI")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="provisioner-pg-")), binaries).create()
    cluster.start()
    yield cluster
    cluster.remove()


async def test_a_postgres_restart_loses_nothing(
    cluster: PrivateCluster,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    unit_id: str,
) -> None:
    first, during, after = (f"{unit_id}:{name}" for name in ("first", "during", "after"))
    # The adapter holds its answer for "during" until the database is down: the result then
    # has to wait for the database, however long stopping it takes.
    gate = f"{unit_id}:gate"
    document = unit(
        unit_id,
        [
            component(first),
            component(during, depends_on=[first], gate=gate),
            component(after, depends_on=[during]),
        ],
    )
    service = ServiceProcess(
        database_url=cluster.url,
        registry=write_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
    ).start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            operation_id = await submit(client, document)

            async def calling() -> bool:
                return await calls_received(mock, during) == 1

            await wait_until(calling)
            cluster.stop()

            async def outage_reported() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_until(outage_reported)
            assert (await client.get(f"/v1/operations/{operation_id}")).status_code == 503
            await open_gate(mock, gate)

            async def result_waiting_for_the_database() -> bool:
                # The adapter has answered, and the service has tried and failed to record it.
                calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()
                answered = any(
                    c["componentId"] == during and c["answeredAt"] for c in calls["calls"]
                )
                return answered and "database_unavailable" in service.log.read_text()

            await wait_until(result_waiting_for_the_database)
            cluster.start()

            operation = await finished_operation(client, operation_id)
            assert (await client.get("/readyz")).status_code == 200
            events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
    finally:
        service.stop()

    assert operation["status"] == "SUCCEEDED"
    assert all(task["attempts"] == 1 for task in operation["tasks"])
    transitions = {(e["componentId"], e["newStatus"]) for e in events}
    assert {(during, "RUNNING"), (during, "SUCCEEDED"), (after, "SUCCEEDED")} <= transitions
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    posts = [call["componentId"] for call in calls if call["componentId"] in {first, during, after}]
    assert sorted(posts) == sorted([first, during, after])  # each exactly once
