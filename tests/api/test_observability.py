"""What the people who run the service see, on a real loopback server: /metrics, request ids
and trace context carried to the adapters, each adapter's health at /v1/tech-adapters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceFactory
from tests.processes import ServiceProcess
from tests.streams import EVENT_STREAM, read_events, scrape, value
from tests.support import (
    DEAD,
    LIMITED,
    MOCK,
    component,
    finished_operation,
    submit,
    unit,
    wait_until,
    write_registry,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_metrics_count_operations_tasks_adapter_calls_and_requests(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """After a deploy with one component on an adapter that cannot be reached: the operation
    submitted, started and finished FAILED, task durations per adapter, the connection errors,
    the HTTP requests by route template; no label holds a unit or operation id."""
    service = service_factory(database_url, retry_max_seconds=0.5)
    good, dead = f"{unit_id}:good", f"{unit_id}:dead"
    document = unit(unit_id, [component(good), component(dead, template=DEAD)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, document)
        assert (await finished_operation(client, operation_id))["status"] == "FAILED"
        assert (await client.get("/v1/operations/nope")).status_code == 404
        text = await scrape(client)
    assert value(text, "provisioner_operations_submitted_total", type="DEPLOY") == 1
    assert value(text, "provisioner_operations_started_total", type="DEPLOY") == 1
    assert value(text, "provisioner_operations_finished_total", type="DEPLOY", status="FAILED") == 1
    succeeded = {"adapter": MOCK, "action": "PROVISION", "status": "SUCCEEDED"}
    assert value(text, "provisioner_task_duration_seconds_count", **succeeded) == 1
    failed = {"adapter": DEAD, "action": "PROVISION", "status": "FAILED"}
    assert value(text, "provisioner_task_duration_seconds_count", **failed) == 1
    assert value(text, "provisioner_adapter_requests_total", adapter=MOCK) >= 1
    assert value(text, "provisioner_adapter_request_duration_seconds_count", adapter=MOCK) >= 1
    errors = {"adapter": DEAD, "kind": "connection", "status_code": ""}
    assert value(text, "provisioner_adapter_errors_total", **errors) >= 1
    assert (
        value(
            text,
            "provisioner_adapter_errors_total",
            adapter=MOCK,
            kind="connection",
            status_code="",
        )
        == 0
    )
    posted = {"method": "POST", "route": "/v1/deployments", "status": "202"}
    assert value(text, "provisioner_http_requests_total", **posted) == 1
    read = {"method": "GET", "route": "/v1/operations/{operation_id}", "status": "200"}
    assert value(text, "provisioner_http_requests_total", **read) >= 1
    missing = {"method": "GET", "route": "/v1/operations/{operation_id}", "status": "404"}
    assert value(text, "provisioner_http_requests_total", **missing) == 1
    timed = {"method": "POST", "route": "/v1/deployments"}
    assert value(text, "provisioner_http_request_duration_seconds_count", **timed) == 1
    assert unit_id not in text
    assert operation_id not in text


async def test_adapter_errors_are_counted_by_kind_and_status(
    sqlite_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """An error answer counts as `http` with its status, an unreadable one as `protocol`."""
    service = service_factory(sqlite_url)
    document = unit(
        unit_id,
        [
            component(f"{unit_id}:refused", fail="provision", failHow="400"),
            component(f"{unit_id}:garbage", garbage=True),
        ],
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await finished_operation(client, await submit(client, document))
        text = await scrape(client)
    http = {"adapter": MOCK, "kind": "http", "status_code": "400"}
    assert value(text, "provisioner_adapter_errors_total", **http) == 1
    protocol = {"adapter": MOCK, "kind": "protocol", "status_code": ""}
    assert value(text, "provisioner_adapter_errors_total", **protocol) == 1


async def test_database_gauges_show_what_is_pending_running_and_corrupt(
    database_url: str, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Operations running and the age of the oldest, read periodically; a failed deploy
    shows as a CORRUPT release; calls in flight and waiting per adapter, read when scraped."""
    service = service_factory(database_url, metrics_refresh_seconds=0.1)
    limited = [component(f"{unit_id}:l{n}", template=LIMITED, latencyMs=1500) for n in range(4)]
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, limited))

        async def busy() -> str | None:
            text = await scrape(client)
            running = value(text, "provisioner_operations", status="RUNNING") == 1
            in_flight = value(text, "provisioner_adapter_calls_in_flight", adapter=LIMITED) == 2
            waiting = value(text, "provisioner_adapter_calls_waiting", adapter=LIMITED) == 2
            return text if running and in_flight and waiting else None

        text = await wait_until(busy)
        assert value(text, "provisioner_operation_oldest_age_seconds", status="RUNNING") > 0
        assert value(text, "provisioner_replica_operations_running") == 1
        await finished_operation(client, operation_id)
        broken = unit(f"{unit_id}-b", [component(f"{unit_id}-b:x", fail="provision")])
        await finished_operation(client, await submit(client, broken))

        async def settled() -> bool:
            text = await scrape(client)
            return (
                value(text, "provisioner_operations", status="RUNNING") == 0
                and value(text, "provisioner_releases", status="CORRUPT") == 1
                and value(text, "provisioner_releases", status="DEPLOYED") == 1
            )

        await wait_until(settled)


async def test_each_app_has_its_own_registry(
    sqlite_url: str, tmp_path: Path, service_factory: ServiceFactory, unit_id: str
) -> None:
    """Two services in one process count their own requests only."""
    one = service_factory(sqlite_url)
    other = service_factory(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
        await finished_operation(
            client, await submit(client, unit(unit_id, [component(f"{unit_id}:x")]))
        )
    async with httpx.AsyncClient(base_url=other.url, timeout=30) as client:
        text = await scrape(client)
    assert value(text, "provisioner_operations_submitted_total", type="DEPLOY") == 0
    assert (
        value(
            text,
            "provisioner_http_requests_total",
            method="POST",
            route="/v1/deployments",
            status="202",
        )
        == 0
    )


async def test_the_request_id_is_taken_or_made_and_always_echoed(
    sqlite_url: str, service_factory: ServiceFactory
) -> None:
    """A usable X-Request-Id is kept; an unusable one (spaces, too long) is replaced; every
    answer, refusals before routing included, carries it."""
    service = service_factory(sqlite_url, max_body_bytes=1024)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        kept = await client.get("/healthz", headers={"x-request-id": "req-42.a:b"})
        assert kept.headers["x-request-id"] == "req-42.a:b"
        for unusable in ("has spaces", "x" * 129, ""):
            made = await client.get("/healthz", headers={"x-request-id": unusable})
            assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"]), unusable
        first, second = await client.get("/healthz"), await client.get("/healthz")
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        too_large = await client.post(
            "/v1/deployments", content=b"x" * 2048, headers={"x-request-id": "big-one"}
        )
        assert too_large.status_code == 413
        assert too_large.headers["x-request-id"] == "big-one"


async def test_adapter_calls_carry_the_submitting_request_s_id_and_trace(
    database_url: str, service_factory: ServiceFactory, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The operation keeps the request's id and trace id; every call made for it in the
    background (POST and status polls) sends X-Request-Id and a traceparent of that trace,
    each call with a span id of its own."""
    service = service_factory(database_url)
    polled = f"{unit_id}:polled"
    document = unit(unit_id, [component(polled, mode="async", polls=2)])
    headers = {"x-request-id": "deploy-7", "traceparent": TRACEPARENT}
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        accepted = await client.post(
            "/v1/deployments", json={"descriptor": document}, headers=headers
        )
        assert accepted.status_code == 202
        assert accepted.headers["x-request-id"] == "deploy-7"
        operation = await finished_operation(client, accepted.json()["id"])
    assert (operation["requestId"], operation["traceId"]) == ("deploy-7", TRACE_ID)
    calls = (await mock.get("/mock/calls")).json()["calls"]
    token = next(
        c["token"] for c in calls if c["componentId"] == polled and c["action"] == "provision"
    )
    mine = [c for c in calls if c["componentId"] == polled or c["token"] == token]
    assert {c["action"] for c in mine} == {"validate", "provision", "status"}
    assert len(mine) >= 4
    assert all(c["requestId"] == "deploy-7" for c in mine)
    parts = [c["traceparent"].split("-") for c in mine]
    assert all(p[0] == "00" and p[1] == TRACE_ID and p[3] == "01" for p in parts)
    spans = [p[2] for p in parts]
    assert len(set(spans)) == len(spans)
    assert "00f067aa0ba902b7" not in spans


async def test_tech_adapters_shows_each_adapter_s_health_from_this_replica(
    sqlite_url: str,
    tmp_path: Path,
    mock_adapter: str,
    service_factory: ServiceFactory,
    unit_id: str,
) -> None:
    """Every registered adapter per environment (credentials kept out of its URL), with its
    last success or last error and the latency of its recent calls; the replica that answered
    is named."""
    extra = f"""
  - infrastructureTemplateId: urn:test:itm:per-env:0
    url: http://user:s3cret@127.0.0.1:9
    environments:
      production: {mock_adapter}
"""
    registry = write_registry(tmp_path, mock_adapter, extra=extra)
    service = service_factory(
        sqlite_url, config=registry, replica_id="replica-x", retry_max_seconds=0.5
    )
    document = unit(
        unit_id, [component(f"{unit_id}:ok"), component(f"{unit_id}:no", template=DEAD)]
    )
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await finished_operation(client, await submit(client, document))
        answer = await client.get("/v1/tech-adapters")
    assert answer.status_code == 200
    body = answer.json()
    assert body["replicaId"] == "replica-x"
    listed = {
        (item["infrastructureTemplateId"], item["environment"]): item for item in body["items"]
    }
    assert ("urn:test:itm:per-env:0", None) in listed
    assert ("urn:test:itm:per-env:0", "production") in listed
    assert "s3cret" not in answer.text
    assert listed[("urn:test:itm:per-env:0", None)]["url"] == "http://127.0.0.1:9"
    mock_health = listed[(MOCK, None)]
    assert mock_health["lastSuccessAt"] is not None
    assert mock_health["lastError"] is None
    assert mock_health["requests"] >= 1
    assert mock_health["errors"] == 0
    latency = mock_health["latencySeconds"]
    assert latency["samples"] >= 1
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    dead = listed[(DEAD, None)]
    assert dead["lastSuccessAt"] is None
    assert dead["lastError"]["kind"] == "connection"
    assert dead["lastError"]["cause"] == "ConnectError"
    assert dead["errors"] >= 1
    assert dead["latencySeconds"]["samples"] == 0
    assert all(item["callsInFlight"] == 0 == item["requestsInFlight"] for item in body["items"])


@pytest.mark.slow
async def test_log_lines_carry_the_request_id(
    sqlite_url: str,
    tmp_path: Path,
    mock_adapter: str,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """A line logged while answering a request carries its id; the engine's lines about an
    operation carry the id of the request that submitted it, long after that request."""
    service = ServiceProcess(
        database_url=sqlite_url,
        registry=write_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
        max_event_streams="1",
    )
    processes.append(service.start())
    document = unit(unit_id, [component(f"{unit_id}:slow", latencyMs=1500)])
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        accepted = await client.post(
            "/v1/deployments", json={"descriptor": document}, headers={"x-request-id": "submit-1"}
        )
        operation_id = accepted.json()["id"]
        path = f"/v1/operations/{operation_id}/events"
        async with client.stream("GET", path, headers=EVENT_STREAM) as held:
            await read_events(held, count=1)
            refused = await client.get(
                path, headers={**EVENT_STREAM, "x-request-id": "one-too-many"}
            )
            assert refused.status_code == 503
        await finished_operation(client, operation_id)
    lines = [json.loads(line) for line in service.log.read_text().splitlines() if line[:1] == "{"]
    failed = [line for line in lines if line["event"] == "request_failed"]
    assert [line["request_id"] for line in failed] == ["one-too-many"]
    about = [line for line in lines if line.get("operation_id") == operation_id]
    assert {"task_finished", "operation_finished"} <= {line["event"] for line in about}
    assert all(line["request_id"] == "submit-1" for line in about)
    assert all(line["trace_id"] == accepted.json()["traceId"] for line in about)
