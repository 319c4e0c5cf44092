"""Several replicas on one PostgreSQL: takeover of a killed replica's work, fencing of a paused
one, work spread across replicas, hand-back on SIGTERM, one active operation per release."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import (
    assert_consistent,
    component,
    finished_operation,
    submit,
    tasks_by_id,
    unit,
    wait_until,
    write_registry,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
LEASE = 2.0

Replica = Callable[..., ServiceProcess]


@pytest.fixture
def replica(postgres_url: str, mock_adapter: str, tmp_path: Path) -> Iterator[Replica]:
    """Start a replica on the shared PostgreSQL database: replica("a", lease_seconds="2")."""
    registry = write_registry(tmp_path, mock_adapter)
    started: list[ServiceProcess] = []

    def start(name: str, **settings: str) -> ServiceProcess:
        values = {
            "replica_id": name,
            "lease_seconds": str(LEASE),
            "claim_interval_seconds": "0.2",
            "shutdown_grace_seconds": "1",
        } | settings
        process = ServiceProcess(
            database_url=postgres_url, registry=registry, log=tmp_path / f"{name}.log", **values
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            os.kill(process.process.pid, signal.SIGCONT)
        process.stop()


async def operation(url: str, operation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body: dict[str, Any] = (await client.get(f"/v1/operations/{operation_id}")).json()
        return body


async def claims(url: str, operation_id: str) -> list[str]:
    """The replica ids that claimed the operation, in order."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
    return [
        e["detail"]["owner"].split("/")[0]
        for e in events
        if e["componentId"] is None and e["newStatus"] == "RUNNING"
    ]


async def provision_posts(mock: httpx.AsyncClient, component_id: str) -> int:
    calls = (await mock.get("/mock/calls", params={"action": "provision"})).json()["calls"]
    return sum(call["componentId"] == component_id for call in calls)


async def test_a_killed_replica_s_operation_is_finished_by_another(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """After SIGKILL, another replica takes over within the lease: succeeded tasks are not
    repeated, the token is polled again, only the call in flight is sent again."""
    done, polling, inflight, after = (
        f"{unit_id}:{n}" for n in ("done", "polling", "inflight", "after")
    )
    document = unit(
        unit_id,
        [
            component(done),
            component(polling, mode="async", latencyMs=3000),
            component(inflight, depends_on=[done], latencyMs=3000),
            component(after, depends_on=[polling, inflight]),
        ],
    )
    a, b = replica("a"), replica("b")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(client, document)

        async def mid_flight() -> bool:
            tasks = tasks_by_id((await client.get(f"/v1/operations/{operation_id}")).json())
            events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
            has_token = any(
                e["componentId"] == polling and "token" in (e["detail"] or {}) for e in events
            )
            return has_token and tasks[inflight]["status"] == "RUNNING"

        await wait_until(mid_flight)
    assert await claims(b.url, operation_id) == ["a"]
    a.kill()
    killed_at = time.monotonic()

    async def taken_over() -> bool:
        return await claims(b.url, operation_id) == ["a", "b"]

    await wait_until(taken_over)
    assert time.monotonic() - killed_at < LEASE + 2  # lease + claim interval + margin
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    assert await provision_posts(mock, done) == 1
    assert await provision_posts(mock, polling) == 1
    assert await provision_posts(mock, inflight) == 2
    assert await provision_posts(mock, after) == 1


async def test_a_paused_replica_cannot_overwrite_the_new_owner(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """SIGSTOP past the lease: another replica finishes the operation; when the paused one
    wakes up, its late writes are refused by the fencing token and change nothing."""
    slow = f"{unit_id}:slow"
    a, b = replica("a"), replica("b")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(slow, latencyMs=1500)]))

        async def calling() -> bool:
            return (
                tasks_by_id((await client.get(f"/v1/operations/{operation_id}")).json())[slow][
                    "status"
                ]
                == "RUNNING"
            )

        await wait_until(calling)
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGSTOP)
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
        events_before = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
        os.kill(a.process.pid, signal.SIGCONT)

        async def fenced_off() -> bool:
            return "lease_lost" in a.log.read_text()

        await wait_until(fenced_off)
        assert await operation(b.url, operation_id) == final
        events_after = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    assert await claims(b.url, operation_id) == ["a", "b"]
    assert events_after == events_before


async def test_work_is_spread_across_replicas(replica: Replica, unit_id: str) -> None:
    """Submitted to one busy replica, operations are claimed by the others too."""
    replicas = [replica(name, max_running_operations="2") for name in ("a", "b", "c")]
    async with httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as client:
        ids = [
            await submit(client, unit(f"{unit_id}-{i}", [component(f"c{i}", latencyMs=400)]))
            for i in range(12)
        ]
        finished = [await finished_operation(client, operation_id) for operation_id in ids]
    assert all(item["status"] == "SUCCEEDED" for item in finished)
    owners = {
        owner for operation_id in ids for owner in await claims(replicas[0].url, operation_id)
    }
    assert len(owners) >= 2, owners


async def test_sigterm_hands_work_back_and_exits_0(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """On SIGTERM a replica stops claiming, hands back what it runs after the grace period and
    exits 0; another replica takes it at once, without waiting out the (long) lease."""
    long_running = f"{unit_id}:long"
    a = replica("a", lease_seconds="60")
    b = replica("b", lease_seconds="60")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(
            client, unit(unit_id, [component(long_running, latencyMs=2000)])
        )

        async def calling() -> bool:
            return (
                tasks_by_id((await client.get(f"/v1/operations/{operation_id}")).json())[
                    long_running
                ]["status"]
                == "RUNNING"
            )

        await wait_until(calling)
    stopped_at = time.monotonic()
    assert await asyncio.to_thread(a.terminate) == 0
    assert time.monotonic() - stopped_at < 10
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    assert time.monotonic() - stopped_at < 30  # far less than the 60 s lease
    assert await claims(b.url, operation_id) == ["a", "b"]


async def test_the_same_deploy_sent_to_two_replicas_at_once(replica: Replica, unit_id: str) -> None:
    """One active operation per release holds across replicas: one 202, one 409."""
    a, b = replica("a"), replica("b")
    document = unit(unit_id, [component(f"{unit_id}:x", latencyMs=300)])
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{server.url}/v1/deployments", json={"descriptor": document})
                for server in (a, b)
            )
        )
    assert sorted(r.status_code for r in responses) == [202, 409]
    accepted = next(r for r in responses if r.status_code == 202).json()
    refused = next(r for r in responses if r.status_code == 409).json()
    assert refused["operationId"] == accepted["id"]
