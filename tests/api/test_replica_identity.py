"""Replica identity across real `provisioner serve` processes on one host: default ids never
collide, and an explicit id in use by a live process cannot be started twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import component, finished_operation, free_port, submit, unit, write_registry

pytestmark = pytest.mark.slow


@pytest.mark.postgres
async def test_three_replicas_with_default_ids_provision_every_component_exactly_once(
    postgres_url: str,
    mock_adapter: str,
    mock: httpx.AsyncClient,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """With the host name as everyone's id, each replica took the others' running work for a
    dead predecessor's and sent it again (2,573 provision calls for 100 components)."""
    assert "PROVISIONER_REPLICA_ID" not in os.environ
    registry = write_registry(tmp_path, mock_adapter)
    replicas = [
        ServiceProcess(
            database_url=postgres_url,
            registry=registry,
            log=tmp_path / f"replica-{n}.log",
            claim_interval_seconds="0.1",
        ).start()
        for n in range(3)
    ]
    processes.extend(replicas)
    units = [
        unit(
            f"{unit_id}-{u}",
            [
                component(
                    f"{unit_id}-{u}:c{c}",
                    latencyMs=150,
                    depends_on=[] if c < 5 else [f"{unit_id}-{u}:c{c - 5}"],
                )
                for c in range(10)
            ],
        )
        for u in range(10)
    ]
    clients = [httpx.AsyncClient(base_url=r.url, timeout=30) for r in replicas]
    try:
        ids = await asyncio.gather(
            *(submit(clients[n % 3], document) for n, document in enumerate(units))
        )
        finished = [await finished_operation(clients[0], i, deadline_seconds=60) for i in ids]
        events = [(await clients[0].get(f"/v1/operations/{i}/events")).json()["items"] for i in ids]
    finally:
        for client in clients:
            await client.aclose()
    assert [item["status"] for item in finished] == ["SUCCEEDED"] * 10
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    mine = Counter(c["componentId"] for c in calls if (c["componentId"] or "").startswith(unit_id))
    expected = {f"{unit_id}-{u}:c{c}" for u in range(10) for c in range(10)}
    assert set(mine) == expected
    assert set(mine.values()) == {1}, {k: v for k, v in mine.items() if v != 1}
    claims = [
        e
        for items in events
        for e in items
        if e["componentId"] is None and e["newStatus"] == "RUNNING"
    ]
    assert not [e for e in claims if "resumedFrom" in (e["detail"] or {})]  # no takeover
    owners = {e["detail"]["owner"].split("/")[0] for e in claims}
    assert len(owners) >= 2  # the work was spread, under distinct ids


def serve(replica: ServiceProcess) -> subprocess.CompletedProcess[str]:
    """`provisioner serve` with the settings of ``replica`` on another port, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "provisioner", "serve", "--port", str(free_port())],
        env=replica.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_explicit_id_held_by_a_live_process_cannot_be_started_again(
    sqlite_url: str, mock_adapter: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """The second process exits at once with one line on stderr; once the first is killed,
    the id is free again without waiting out the lease (its process is gone: with a lease of
    10 minutes, waiting would outlast the start's deadline)."""
    settings = {
        "database_url": sqlite_url,
        "registry": write_registry(tmp_path, mock_adapter),
        "log": tmp_path / "first.log",
        "replica_id": "the-one",
        "lease_seconds": "600",
    }
    first = ServiceProcess(**settings).start()
    processes.append(first)
    refused = serve(first)
    assert refused.returncode == 16
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert first.process is not None
    assert f"replica id 'the-one' is in use by a live process (pid {first.process.pid}" in lines[0]
    assert httpx.get(f"{first.url}/healthz").status_code == 200  # undisturbed

    first.kill()
    second = ServiceProcess(**(settings | {"log": tmp_path / "second.log"})).start()
    processes.append(second)
    assert httpx.get(f"{second.url}/readyz").status_code == 200
