"""Event streams across replicas on one PostgreSQL: a stream on one replica follows an operation
another replica runs, woken by LISTEN/NOTIFY (its polling is set far slower than the test), and
survives its listening connection being cut."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.processes import ServiceProcess
from tests.streams import EVENT_STREAM, frames, read_events
from tests.support import component, submit, unit, write_registry

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

Replica = Callable[..., ServiceProcess]
# Without notifications a stream would look again only after this long: far longer than the
# operations below take, so finishing in time shows that NOTIFY woke it.
SLOW_POLL = "30"


@pytest.fixture
def replica(postgres_url: str, mock_adapter: str, tmp_path: Path) -> Iterator[Replica]:
    registry = write_registry(tmp_path, mock_adapter)
    started: list[ServiceProcess] = []

    def start(name: str, **settings: str) -> ServiceProcess:
        values = {"replica_id": name, "shutdown_grace_seconds": "1"} | settings
        process = ServiceProcess(
            database_url=postgres_url, registry=registry, log=tmp_path / f"{name}.log", **values
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def idle_replica(replica: Replica, name: str) -> ServiceProcess:
    """A replica that claims nothing during a test and streams only when notified."""
    return replica(name, claim_interval_seconds="600", event_stream_poll_seconds=SLOW_POLL)


async def owners(client: httpx.AsyncClient, operation_id: str) -> list[str]:
    events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
    return [
        e["detail"]["owner"].split("/")[0]
        for e in events
        if e["componentId"] is None and e["newStatus"] == "RUNNING"
    ]


def log_events(process: ServiceProcess, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line[:1] == "{"]
    return [line for line in lines if line.get("event") == name]


async def test_a_stream_on_one_replica_follows_an_operation_run_by_another(
    replica: Replica, unit_id: str
) -> None:
    """Submitted to A, which runs it, and streamed from B: every event, promptly, in order;
    resumed on A after the first few with Last-Event-ID, nothing lost or repeated."""
    a = replica("a")
    b = idle_replica(replica, "b")
    steps = [f"{unit_id}:{n}" for n in range(3)]
    document = unit(
        unit_id,
        [component(s, depends_on=steps[:i][-1:], latencyMs=400) for i, s in enumerate(steps)],
    )
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        operation_id = await submit(on_a, document)
        path = f"/v1/operations/{operation_id}/events"
        began = time.monotonic()
        async with on_b.stream("GET", path, headers=EVENT_STREAM) as response:
            assert response.status_code == 200
            events, end = await read_events(response)
        took = time.monotonic() - began
        assert end is not None
        assert end.json()["status"] == "SUCCEEDED"
        assert took < float(SLOW_POLL) / 2, took
        trail = (await on_b.get(path)).json()["items"]
        assert events == trail
        assert await owners(on_b, operation_id) == ["a"]

        # Again, resumed half-way on the other replica.
        operation_id = await submit(on_a, document | {"version": "2.0.0"})
        path = f"/v1/operations/{operation_id}/events"
        async with on_b.stream("GET", path, headers=EVENT_STREAM) as response:
            before, _ = await read_events(response, count=4)
        resume = {**EVENT_STREAM, "Last-Event-ID": str(before[-1]["id"])}
        async with on_a.stream("GET", path, headers=resume) as response:
            after, end = await read_events(response)
        assert end is not None
        assert end.json()["status"] == "SUCCEEDED"
        assert before + after == (await on_a.get(path)).json()["items"]


async def terminate_listeners(postgres_url: str) -> int:
    """Cut every event-listening connection to this session's database from the server
    side (another test session's are not ours to cut); how many there were."""
    engine = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'provisioner-event-listener' "
                    "AND datname = current_database()"
                )
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


async def test_a_stream_survives_its_replica_losing_the_listening_connection(
    replica: Replica, postgres_url: str, unit_id: str
) -> None:
    """The listening connection is cut mid-operation: the replica reconnects and its stream
    still gets every event, long before it would have polled."""
    a = replica("a")
    b = idle_replica(replica, "b")
    steps = [f"{unit_id}:{n}" for n in range(4)]
    document = unit(
        unit_id,
        [component(s, depends_on=steps[:i][-1:], latencyMs=700) for i, s in enumerate(steps)],
    )
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
        operation_id = await submit(on_a, document)
        path = f"/v1/operations/{operation_id}/events"
        async with httpx.AsyncClient(base_url=b.url, timeout=30) as on_b:
            began = time.monotonic()
            events: list[dict[str, Any]] = []
            async with on_b.stream("GET", path, headers=EVENT_STREAM) as response:
                cut = False
                async for frame in frames(response):
                    if frame.event == "event":
                        events.append(frame.json())
                        first_done = events[-1]["componentId"] == steps[0]
                        if first_done and events[-1]["newStatus"] == "SUCCEEDED" and not cut:
                            assert await terminate_listeners(postgres_url) >= 1
                            cut = True
                    elif frame.event == "end":
                        break
            took = time.monotonic() - began
        assert cut
        assert took < float(SLOW_POLL) / 2, took
        assert events == (await on_a.get(path)).json()["items"]
    assert log_events(b, "event_listener_lost")
    assert len(log_events(b, "event_listener_connected")) >= 2
