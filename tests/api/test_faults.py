"""Tech Adapter faults survived with nothing lost. After each, every component's state in the
provisioner matches what the adapter saw, and no operation is left running."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from provisioner.mockadapter import create_mock_app
from tests.conftest import ServiceFactory
from tests.support import (
    SLOW,
    ServerThread,
    assert_consistent,
    component,
    finished_operation,
    free_port,
    submit,
    tasks_by_id,
    unit,
    wait_until,
    write_registry,
)


async def test_an_adapter_that_refuses_connections_then_comes_up_is_retried(
    database_url: str,
    service_factory: ServiceFactory,
    mock_adapter: str,
    tmp_path: Path,
    unit_id: str,
) -> None:
    """Connection refused cannot have been processed: the POST is sent again once it listens."""
    port = free_port()
    late_template = "urn:test:itm:late:0"
    registry = write_registry(
        tmp_path,
        mock_adapter,
        # Not validated: the POST being retried is the provision, not a validation.
        extra=f"  - infrastructureTemplateId: {late_template}\n    url: http://127.0.0.1:{port}\n"
        "    validateBeforeDeploy: false\n",
    )
    # A retry budget (2 s apart after the first few) long enough for the adapter to start
    # listening on a loaded machine.
    server = service_factory(
        database_url, config=registry, retry_max_seconds=120.0, retry_attempts=70
    )
    late = f"{unit_id}:late"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        operation_id = await submit(
            client, unit(unit_id, [component(late, template=late_template)])
        )

        async def calling() -> bool:
            tasks = tasks_by_id((await client.get(f"/v1/operations/{operation_id}")).json())
            return tasks[late]["status"] == "RUNNING"

        await wait_until(calling)
        adapter = ServerThread(create_mock_app(), port=port).start()
        try:
            operation = await finished_operation(client, operation_id)
            async with httpx.AsyncClient(base_url=adapter.url) as late_mock:
                seen = (await late_mock.get("/mock/components")).json()
        finally:
            adapter.stop(force=True)
    assert operation["status"] == "SUCCEEDED"
    assert tasks_by_id(operation)[late]["attempts"] == 1
    assert seen[late]["provisionCount"] == 1


async def test_a_connection_reset_mid_response_is_not_sent_again(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """The adapter may have acted: the task fails (component CORRUPT) rather than provision
    twice; a retry then brings the release to DEPLOYED."""
    cut = f"{unit_id}:cut"
    document = unit(unit_id, [component(cut, reset=True)])
    operation = await finished_operation(client, await submit(client, document))
    task = tasks_by_id(operation)[cut]
    assert task["status"] == "FAILED"
    assert "may have received the request" in task["error"]["message"]
    assert (await mock.get("/mock/components")).json()[cut]["provisionCount"] == 1
    await assert_consistent(client, mock, unit_id)

    retry = await client.post(f"/v1/operations/{operation['id']}/retry")
    assert retry.status_code == 202
    # The mock cuts every answer for this component, so the retry fails the same way: what
    # matters is that nothing is lost or left running in between.
    await finished_operation(client, retry.json()["id"])
    await assert_consistent(client, mock, unit_id)


async def test_server_errors_for_a_while_then_recovery(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """503 on the POST and on polls is transient: retried within one attempt, then success."""
    posts, polls = f"{unit_id}:posts", f"{unit_id}:polls"
    document = unit(
        unit_id,
        [component(posts, transientErrors=2), component(polls, mode="async", pollErrors=3)],
    )
    operation = await finished_operation(client, await submit(client, document))
    assert operation["status"] == "SUCCEEDED"
    assert all(task["attempts"] == 1 for task in operation["tasks"])
    await assert_consistent(client, mock, unit_id)


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        pytest.param({"garbage": True}, "FAILED", id="garbage-body"),
        pytest.param({"contentType": "text/plain"}, "SUCCEEDED", id="json-labelled-text"),
        pytest.param({"mode": "async", "garbage": True}, "FAILED", id="garbage-poll"),
    ],
)
async def test_unreadable_or_mislabelled_answers(
    client: httpx.AsyncClient,
    mock: httpx.AsyncClient,
    unit_id: str,
    knobs: dict[str, object],
    expected: str,
) -> None:
    """A body that is not a ProvisioningStatus fails the task readably; a valid one with the
    wrong content type is read anyway."""
    target = f"{unit_id}:target"
    operation = await finished_operation(
        client, await submit(client, unit(unit_id, [component(target, **knobs)]))
    )
    task = tasks_by_id(operation)[target]
    assert task["status"] == expected
    if expected == "FAILED":
        assert task["error"]["message"]
    await assert_consistent(client, mock, unit_id)


async def test_a_token_that_never_finishes_times_out(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    never = f"{unit_id}:never"
    operation = await finished_operation(
        client,
        await submit(
            client, unit(unit_id, [component(never, template=SLOW, mode="async", neverFinish=True)])
        ),
    )
    assert "did not finish within 1 s" in tasks_by_id(operation)[never]["error"]["message"]
    await assert_consistent(client, mock, unit_id)


async def test_an_adapter_that_forgets_its_tokens_is_never_believed_completed(
    client: httpx.AsyncClient, mock: httpx.AsyncClient, unit_id: str
) -> None:
    """After an adapter restart, polls of the old token fail; within the budget the task
    fails ("lost track"), never a false COMPLETED."""
    forgotten = f"{unit_id}:forgotten"
    operation_id = await submit(
        client, unit(unit_id, [component(forgotten, mode="async", latencyMs=60000)])
    )

    async def polling() -> bool:
        events = (await client.get(f"/v1/operations/{operation_id}/events")).json()["items"]
        return any(e["componentId"] == forgotten and "token" in (e["detail"] or {}) for e in events)

    await wait_until(polling)
    assert (await mock.post("/mock/forget-tokens")).status_code == 200
    operation = await finished_operation(client, operation_id)
    task = tasks_by_id(operation)[forgotten]
    assert task["status"] == "FAILED"
    assert "lost track" in task["error"]["message"]
    assert task["error"]["consecutiveFailures"] == 10
    release = (await client.get(f"/v1/deployment-units/{unit_id}/environments/development")).json()
    assert release["components"][0]["status"] == "CORRUPT"
    await assert_consistent(client, mock, unit_id)
