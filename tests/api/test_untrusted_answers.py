"""An adapter answer that cannot be stored fails its own task, with a readable reason; the
tasks beside it carry on, and the answer's privateInfo reaches no log line and no API answer.

The real service runs as a process with JSON logs at DEBUG, on SQLite and PostgreSQL (which
refuses ``Infinity`` in a JSON column, and NUL in any text), against the mock adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.processes import ServiceProcess
from tests.support import component, finished_operation, tasks_by_id, unit, write_registry

pytestmark = pytest.mark.slow


async def test_an_unstorable_answer_fails_its_task_alone_and_leaks_no_private_info(
    database_url: str,
    mock_adapter: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """``1e400`` (sync answer) and a NUL (async, polled) in publicInfo: those tasks FAIL naming
    the value, their dependant is SKIPPED, the sibling SUCCEEDS, the operation ends FAILED (not
    an internal error) and the answers' privateInfo appears nowhere."""
    huge, nul, after, good = (f"{unit_id}:{name}" for name in ("huge", "nul", "after", "good"))
    document = unit(
        unit_id,
        [
            component(huge, publicInfoJson='{"size": 1e400}'),
            component(nul, mode="async", publicInfoJson='{"name": "a\\u0000b"}'),
            component(after, depends_on=[huge]),
            component(good),
        ],
    )
    log = tmp_path / "service.log"
    service = ServiceProcess(
        database_url=database_url,
        registry=write_registry(tmp_path, mock_adapter),
        log=log,
        log_level="DEBUG",
    ).start()
    processes.append(service)

    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        response = await client.post("/v1/deployments", json={"descriptor": document})
        assert response.status_code == 202, response.text
        operation_id = response.json()["id"]
        operation = await finished_operation(client, operation_id)
        events = await client.get(f"/v1/operations/{operation_id}/events")
        release = await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
    service.terminate()

    tasks = tasks_by_id(operation)
    assert operation["status"] == "FAILED"
    assert operation["error"].startswith("2 task(s) failed")
    assert [tasks[c]["status"] for c in (huge, nul, after, good)] == [
        "FAILED",
        "FAILED",
        "SKIPPED",
        "SUCCEEDED",
    ]
    huge_reason = (
        "the answer cannot be stored (info.publicInfo.size: the number 1e400 is out of range)"
    )
    assert huge_reason in tasks[huge]["error"]["message"]
    assert "info.publicInfo.name: the text holds a NUL character" in tasks[nul]["error"]["message"]
    assert tasks[nul]["error"]["request"].startswith("GET /v1/provision/")  # failed at the poll
    statuses = {item["componentId"]: item["status"] for item in release.json()["components"]}
    assert statuses[huge] == statuses[nul] == "CORRUPT"
    assert statuses[good] == "DEPLOYED"

    secrets = [f"secret-{component_id}" for component_id in (huge, nul, good)]
    log_text = log.read_text()
    assert '"event": "task_finished"' in log_text  # the log is the service's, at DEBUG
    shown = json.dumps([operation, events.json(), release.json()])
    for secret in secrets:
        assert secret not in log_text
        assert secret not in shown
