"""Market Plane delivery across process deaths and replicas: an event published and claimed
by a process that was then killed is delivered by the next one; replicas sharing one
PostgreSQL deliver each event once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.marketplace import (
    FAST_RETRIES,
    SECRET,
    fail_deliveries,
    market_events,
    publications,
    registry_with,
    release_becomes,
)
from tests.processes import ServiceProcess
from tests.support import (
    ServerThread,
    component,
    finished_operation,
    submit,
    unit,
    write_registry,
)

pytestmark = pytest.mark.slow


async def test_an_event_claimed_by_a_killed_process_is_delivered_after_the_restart(
    database_url: str,
    mock_adapter: str,
    market: ServerThread,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """Killed after the event was published and claimed, before it was sent: the restarted
    process (same replica id) takes the claim back at once and delivers it, once; SIGTERM
    then stops it cleanly."""
    settings: dict[str, Any] = {
        "database_url": database_url,
        "registry": registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET)),
        "log": tmp_path / "service.log",
        "replica_id": "publish-crash",
        "shutdown_grace_seconds": "2",
        **FAST_RETRIES,
    }
    doomed = ServiceProcess(**settings, failpoints=f"before-delivery={unit_id}").start()
    processes.append(doomed)
    async with httpx.AsyncClient(base_url=doomed.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
    assert doomed.wait_exit() == -9
    assert (await market_events(market))["events"] == []

    restarted = ServiceProcess(**settings).start()
    processes.append(restarted)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        await release_becomes(client, unit_id, "DEPLOYED")
        (item,) = await publications(client, unit_id)
    assert item["deliveries"][0]["attempts"] == 2  # the killed claim, then the delivery
    received = await market_events(market)
    assert [event["body"]["operationId"] for event in received["events"]] == [operation_id]
    assert received["rejected"] == []
    assert restarted.terminate() == 0


async def test_deliveries_to_a_market_plane_removed_from_the_registry_are_given_up(
    sqlite_url: str,
    mock_adapter: str,
    market: ServerThread,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """A Market Plane that never acknowledged holds the release IN_PROGRESS; once the
    operator removes it from the registry, the restarted service gives its deliveries up
    (DROPPED, saying why) and the release is DEPLOYED."""
    settings: dict[str, Any] = {
        "database_url": sqlite_url,
        "log": tmp_path / "service.log",
        "replica_id": "drop-unconfigured",
        **FAST_RETRIES,
    }
    await fail_deliveries(market, 100_000)
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    first = ServiceProcess(**settings, registry=registry).start()
    processes.append(first)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        operation_id = await submit(client, unit(unit_id, [component(f"{unit_id}:a")]))
        assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        await release_becomes(client, unit_id, "IN_PROGRESS")
    assert first.terminate() == 0

    without = write_registry(tmp_path, mock_adapter)
    second = ServiceProcess(**settings, registry=without).start()
    processes.append(second)
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        release = await release_becomes(client, unit_id, "DEPLOYED")
        assert release["statusReason"] is None
        (item,) = await publications(client, unit_id)
    (delivery,) = item["deliveries"]
    assert delivery["status"] == "DROPPED"
    assert "no longer configured" in delivery["lastError"]
    assert delivery["nextAttemptAt"] is None
    assert second.terminate() == 0


@pytest.mark.postgres
async def test_replicas_deliver_each_event_once(
    postgres_url: str,
    mock_adapter: str,
    market: ServerThread,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """Two replicas, deploys submitted to each, the Market Plane failing the first attempts
    so that retries fall due while both look for work: every event is acknowledged exactly
    once, and only the failures were sent twice."""
    registry = registry_with(tmp_path, mock_adapter, ("catalog", market.url, SECRET))
    replicas = [
        ServiceProcess(
            database_url=postgres_url,
            registry=registry,
            log=tmp_path / f"{name}.log",
            replica_id=name,
            claim_interval_seconds="0.05",
            shutdown_grace_seconds="2",
            **FAST_RETRIES,
        ).start()
        for name in ("a", "b")
    ]
    processes.extend(replicas)
    failures = 6
    await fail_deliveries(market, failures)
    units = [f"{unit_id}-{index}" for index in range(8)]
    operations = []
    for index, each in enumerate(units):
        async with httpx.AsyncClient(base_url=replicas[index % 2].url, timeout=30) as client:
            operations.append(await submit(client, unit(each, [component(f"{each}:a")])))
    async with httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as client:
        for operation_id in operations:
            assert (await finished_operation(client, operation_id))["status"] == "SUCCEEDED"
        for each in units:
            await release_becomes(client, each, "DEPLOYED")
    received = await market_events(market)
    event_ids = [event["body"]["eventId"] for event in received["events"]]
    assert len(event_ids) == len(set(event_ids)) == len(units)
    assert sorted(event["body"]["deploymentUnitId"] for event in received["events"]) == units
    assert len(received["rejected"]) == failures
