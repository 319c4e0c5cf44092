"""Several replicas on one PostgreSQL: takeover of a killed replica's work, fencing of a paused
one, work spread across replicas, hand-back on SIGTERM, one active operation per release.

Nothing here depends on timing. Which replica claims a new operation is a race (the one that
received it claims at once, the others poll), so a test that needs a given owner starts the
other replicas only once that owner holds the operation. An adapter call that must still be in
flight when a replica is killed, paused or stopped is held by a mock adapter gate
(``specific.mock.gate``) until the test opens it, rather than by a latency that a loaded
machine can outlast.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import (
    assert_consistent,
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
# Renewed every 2 s (the heartbeat's 0.5 s ticks round lease / 3 up), so a replica keeps its
# lease through 4 s of stalls: a 2 s lease, renewed every 1 s, was lost to a live replica on a
# loaded machine.
LEASE = 6.0

Replica = Callable[..., list[ServiceProcess]]


@pytest.fixture
def replica(postgres_url: str, mock_adapter: str, tmp_path: Path) -> Iterator[Replica]:
    """Start replicas on the shared PostgreSQL database: ``a, b = replica("a", "b")``."""
    registry = write_registry(tmp_path, mock_adapter)
    started: list[ServiceProcess] = []

    def start(*names: str, **settings: str) -> list[ServiceProcess]:
        processes = []
        for name in names:
            values = {
                "replica_id": name,
                "lease_seconds": str(LEASE),
                "claim_interval_seconds": "0.2",
                "shutdown_grace_seconds": "1",
            } | settings
            process = ServiceProcess(
                database_url=postgres_url, registry=registry, log=tmp_path / f"{name}.log", **values
            ).launch()
            started.append(process)
            processes.append(process)
        return [process.wait_ready() for process in processes]  # started together: faster

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            os.kill(process.process.pid, signal.SIGCONT)
        process.stop()


async def operation(url: str, operation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body: dict[str, Any] = (await client.get(f"/v1/operations/{operation_id}")).json()
        return body


async def events(url: str, operation_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        items: list[dict[str, Any]] = (
            await client.get(f"/v1/operations/{operation_id}/events")
        ).json()["items"]
        return items


async def claim_events(url: str, operation_id: str) -> list[dict[str, Any]]:
    """The operation's claims (its moves to RUNNING), in order."""
    return [
        e
        for e in await events(url, operation_id)
        if e["componentId"] is None and e["newStatus"] == "RUNNING"
    ]


async def claims(url: str, operation_id: str) -> list[str]:
    """The replica ids that claimed the operation, in order."""
    return [e["detail"]["owner"].split("/")[0] for e in await claim_events(url, operation_id)]


async def test_a_killed_replica_s_operation_is_finished_by_another(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """After SIGKILL, another replica takes over once the lease lapses: succeeded tasks are not
    repeated, the token is polled again, only the call in flight is sent again."""
    done, polling, inflight, after = (
        f"{unit_id}:{n}" for n in ("done", "polling", "inflight", "after")
    )
    gate = f"{unit_id}:gate"
    document = unit(
        unit_id,
        [
            component(done),
            component(polling, mode="async", gate=gate),
            component(inflight, depends_on=[done], gate=gate),
            component(after, depends_on=[polling, inflight]),
        ],
    )
    (a,) = replica("a")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(client, document)

        async def mid_flight() -> bool:
            has_token = any(
                e["componentId"] == polling and "token" in (e["detail"] or {})
                for e in await events(a.url, operation_id)
            )
            return has_token and await calls_received(mock, inflight) == 1

        await wait_until(mid_flight)
    a.kill()
    (b,) = replica("b")  # started only now: "a" is the one that claimed the operation

    async def taken_over() -> bool:
        return await claims(b.url, operation_id) == ["a", "b"]

    await wait_until(taken_over)
    await open_gate(mock, gate)
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    takeover = (await claim_events(b.url, operation_id))[1]
    assert takeover["detail"]["resumedFrom"].startswith("a/")
    assert await calls_received(mock, done) == 1
    assert await calls_received(mock, polling) == 1
    assert await calls_received(mock, inflight) == 2
    assert await calls_received(mock, after) == 1


async def test_a_paused_replica_cannot_overwrite_the_new_owner(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """SIGSTOP past the lease: another replica finishes the operation; when the paused one
    wakes up with its adapter's answer, its late write is refused by the fencing token and
    changes nothing."""
    slow = f"{unit_id}:slow"
    gate = f"{unit_id}:gate"
    (a,) = replica("a")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(slow, gate=gate)]))

    async def calling() -> bool:
        return await calls_received(mock, slow) == 1

    await wait_until(calling)  # a's call is held by the adapter: a cannot finish on its own
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGSTOP)
    (b,) = replica("b")

    async def taken_over() -> bool:
        return await claims(b.url, operation_id) == ["a", "b"]

    await wait_until(taken_over)
    await open_gate(mock, gate)  # answers b's call, and a's, which waits unread in its socket
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
    events_before = await events(b.url, operation_id)
    log_before = len(a.log.read_bytes())
    os.kill(a.process.pid, signal.SIGCONT)

    async def fenced_off() -> bool:
        return b"lease_lost" in a.log.read_bytes()[log_before:]

    await wait_until(fenced_off)
    assert await operation(b.url, operation_id) == final
    assert await events(b.url, operation_id) == events_before
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    assert await claims(b.url, operation_id) == ["a", "b"]
    assert await calls_received(mock, slow) == 2


async def test_work_is_spread_across_replicas(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """Submitted to one replica that runs at most two at a time, operations are claimed by
    the others too."""
    gate = f"{unit_id}:gate"
    replicas = replica("a", "b", "c", max_running_operations="2")
    async with httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as client:
        ids = [
            await submit(client, unit(f"{unit_id}-{i}", [component(f"c{i}", gate=gate)]))
            for i in range(12)
        ]

        async def owners() -> set[str]:
            return {owner for op in ids for owner in await claims(replicas[0].url, op)}

        async def every_replica_busy() -> bool:
            return await owners() == {"a", "b", "c"}

        await wait_until(every_replica_busy)  # the gate holds each replica's two operations
        await open_gate(mock, gate)
        finished = [await finished_operation(client, operation_id) for operation_id in ids]
    assert all(item["status"] == "SUCCEEDED" for item in finished)


async def test_sigterm_hands_work_back_and_exits_0(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """On SIGTERM a replica stops claiming, hands back what it runs after the grace period and
    exits 0; another replica takes it at once, without waiting out the (hour-long) lease."""
    long_running = f"{unit_id}:long"
    gate = f"{unit_id}:gate"
    (a,) = replica("a", lease_seconds="3600")
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(long_running, gate=gate)]))

    async def calling() -> bool:
        return await calls_received(mock, long_running) == 1

    await wait_until(calling)  # held by the adapter: it cannot finish within the grace period
    (b,) = replica("b", lease_seconds="3600")
    assert await claims(b.url, operation_id) == ["a"]
    assert await asyncio.to_thread(a.terminate) == 0
    assert "operations_handed_back" in a.log.read_text()

    async def taken_over() -> bool:
        # Within the deadline, far shorter than the lease: only a hand-back lets b in.
        return await claims(b.url, operation_id) == ["a", "b"]

    await wait_until(taken_over)
    await open_gate(mock, gate)
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as client:
        final = await finished_operation(client, operation_id)
        await assert_consistent(client, mock, unit_id)
    assert final["status"] == "SUCCEEDED"
    assert await calls_received(mock, long_running) == 2


async def test_the_same_deploy_sent_to_two_replicas_at_once(
    replica: Replica, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """One active operation per release holds across replicas: one 202, one 409."""
    gate = f"{unit_id}:gate"
    a, b = replica("a", "b")
    # Held by the gate, the first operation is still active when the second request lands,
    # however late the machine lets it land.
    document = unit(unit_id, [component(f"{unit_id}:x", gate=gate)])
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{server.url}/v1/deployments", json={"descriptor": document})
                for server in (a, b)
            )
        )
    await open_gate(mock, gate)
    assert sorted(r.status_code for r in responses) == [202, 409]
    accepted = next(r for r in responses if r.status_code == 202).json()
    refused = next(r for r in responses if r.status_code == 409).json()
    assert refused["operationId"] == accepted["id"]
