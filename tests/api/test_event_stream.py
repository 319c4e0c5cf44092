"""GET /v1/operations/{id}/events as Server-Sent Events, on a real loopback server: live until
the operation ends, resumable with Last-Event-ID, bounded per replica, JSON otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceFactory
from tests.processes import ServiceProcess
from tests.streams import EVENT_STREAM, Frame, frames, read_events
from tests.support import (
    component,
    finished_operation,
    submit,
    unit,
    wait_until,
    write_registry,
)


async def trail(client: httpx.AsyncClient, operation_id: str) -> list[dict[str, Any]]:
    """The operation's events as the JSON answer lists them."""
    response = await client.get(f"/v1/operations/{operation_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_stream_follows_an_operation_to_its_end(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Every event, in order, each with its sequence number as id, then `end` with the final
    status; the server closes the stream. Together they are the JSON trail, exactly."""
    service = service_factory(database_url)
    first, second = f"{unit_id}:first", f"{unit_id}:second"
    document = unit(
        unit_id,
        [
            component(first, latencyMs=300),
            component(second, depends_on=[first], mode="async", latencyMs=300),
        ],
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            events, end = await read_events(response)  # and the server closed it
        assert end is not None
        assert end.id is None
        assert end.json() == {"operationId": operation_id, "status": "SUCCEEDED"}
        assert events == await trail(client, operation_id)
    ids = [event["id"] for event in events]
    assert ids == sorted(set(ids))
    assert [(e["componentId"], e["newStatus"]) for e in events][-2:] == [
        (second, "SUCCEEDED"),
        (None, "SUCCEEDED"),
    ]


async def test_a_stream_of_an_operation_that_ended_sends_its_trail_then_end(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Asked after the end (or resumed past the last event), a stream answers at once."""
    service = service_factory(database_url)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:x")]))
        await finished_operation(client, operation_id)
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            events, end = await read_events(response)
        assert events == await trail(client, operation_id)
        assert end is not None
        assert end.json()["status"] == "SUCCEEDED"
        headers = {**EVENT_STREAM, "Last-Event-ID": str(events[-1]["id"])}
        async with client.stream("GET", path, headers=headers) as response:
            assert await read_events(response) == ([], end)


async def test_a_stream_resumes_after_last_event_id_with_nothing_lost_or_repeated(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """A client that reconnects mid-operation with Last-Event-ID gets exactly the events after
    it: the two streams together are the whole trail."""
    service = service_factory(database_url)
    steps = [f"{unit_id}:{n}" for n in range(3)]
    document = unit(
        unit_id,
        [component(step, depends_on=steps[:i][-1:], latencyMs=250) for i, step in enumerate(steps)],
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            before, end = await read_events(response, count=4)
        assert end is None  # the first connection was dropped mid-operation
        operation = (await client.get(f"/v1/operations/{operation_id}")).json()
        assert operation["status"] in ("PENDING", "RUNNING")
        resume = {**EVENT_STREAM, "Last-Event-ID": str(before[-1]["id"])}
        async with client.stream("GET", path, headers=resume) as response:
            after, end = await read_events(response)
        assert end is not None
        assert end.json()["status"] == "SUCCEEDED"
        assert before + after == await trail(client, operation_id)


async def test_an_idle_stream_gets_keep_alive_comments(
    sqlite_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """While nothing happens, comments keep proxies from closing the connection."""
    service = service_factory(sqlite_url, event_stream_ping_seconds=0.2)
    slow = f"{unit_id}:slow"
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(slow, latencyMs=1500)]))
        path = f"/v1/operations/{operation_id}/events"
        comments = 0
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            async for frame in frames(response):
                comments += frame.comment == "keep-alive"
                if frame.event == "end":
                    break
    assert comments >= 2


async def test_streams_past_the_limit_are_refused_until_one_is_closed(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """A replica keeps at most PROVISIONER_MAX_EVENT_STREAMS open: the next gets a 503
    problem with Retry-After; a client that disconnects frees its place."""
    service = service_factory(database_url, max_event_streams=1)
    waiting = f"{unit_id}:waiting"
    document = unit(unit_id, [component(waiting, mode="async", neverFinish=True)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as held:
            await read_events(held, count=1)
            refused = await client.get(path, headers=EVENT_STREAM)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"].isdigit()
            assert refused.json()["type"] == "urn:provisioner:problem:at-capacity"
            # JSON reads are not streams: they are still answered.
            assert (await client.get(path)).status_code == 200

        async def reopened() -> bool:
            async with client.stream("GET", path, headers=EVENT_STREAM) as response:
                if response.status_code != 200:
                    await response.aread()
                    return False
                return bool(await read_events(response, count=1))

        await wait_until(reopened)
        assert (await client.post(f"/v1/operations/{operation_id}/cancel")).status_code == 202
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            _, end = await read_events(response)
        assert end is not None
        assert end.json()["status"] == "CANCELLED"


async def test_the_json_answer_is_unchanged_for_other_accept_values(
    sqlite_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Without text/event-stream preferred, the route answers its JSON list, paginated."""
    service = service_factory(sqlite_url)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:x")]))
        await finished_operation(client, operation_id)
        path = f"/v1/operations/{operation_id}/events"
        for accept in ("*/*", "application/json", "application/json, text/event-stream;q=0.5"):
            response = await client.get(path, headers={"accept": accept}, params={"limit": 2})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert len(response.json()["items"]) == 2


async def test_streams_of_unknown_operations_and_bad_last_event_ids_are_refused(
    sqlite_url: str, service_factory: ServiceFactory
) -> None:
    """404 and 422 problems, before any stream is opened (and no place is taken)."""
    service = service_factory(sqlite_url, max_event_streams=1)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        for _ in range(3):
            missing = await client.get("/v1/operations/nope/events", headers=EVENT_STREAM)
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
        bad = await client.get(
            "/v1/operations/nope/events", headers={**EVENT_STREAM, "Last-Event-ID": "x1"}
        )
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "header.Last-Event-ID"


async def test_many_streams_of_one_operation_see_the_same_trail(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Streams opened at the same time by several clients each get every event once."""
    service = service_factory(database_url)
    document = unit(unit_id, [component(f"{unit_id}:{n}", latencyMs=200) for n in range(5)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        path = f"/v1/operations/{operation_id}/events"

        async def follow() -> list[dict[str, Any]]:
            async with client.stream("GET", path, headers=EVENT_STREAM) as response:
                events, end = await read_events(response)
            assert end is not None
            return events

        seen = await asyncio.gather(*(follow() for _ in range(4)))
        expected = await trail(client, operation_id)
    assert all(events == expected for events in seen)


@pytest.mark.slow
async def test_open_streams_do_not_hold_up_a_replica_s_shutdown(
    sqlite_url: str,
    tmp_path: Path,
    mock_adapter: str,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """On SIGTERM the streams are closed at once (clients reconnect elsewhere with
    Last-Event-ID), so that the replica's shutdown can go on, and it exits 0."""
    service = ServiceProcess(
        database_url=sqlite_url,
        registry=write_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
    )
    processes.append(service.start())
    # Still running when the signal comes; ended (within the grace period) soon after.
    document = unit(unit_id, [component(f"{unit_id}:x", latencyMs=4000)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as response:
            stream = frames(response)
            await anext(stream)
            assert service.process is not None
            service.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            rest: list[Frame] = []
            # The connection is cut (an EventSource reconnects as after any close).
            with contextlib.suppress(httpx.RemoteProtocolError):
                async with asyncio.timeout(60):
                    rest.extend([frame async for frame in stream])
            closed_after = time.monotonic() - signalled
    # Closed at once, not held open until the operation's end was streamed.
    assert all(frame.event != "end" for frame in rest)
    assert closed_after < 10, closed_after
    assert await asyncio.to_thread(service.wait_exit, 60) == 0
