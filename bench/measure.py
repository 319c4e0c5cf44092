"""One deploy through the service's API, timed by the server's own clock.

The makespan is the operation's ``finishedAt - createdAt``. Completion is detected by polling the
cheap operation listing (no tasks) every 20 ms; the polling only decides when to look, it does
not enter the figure. The POST's own wall-clock time is measured on the client.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from workloads import Shape, descriptor, descriptor_yaml

# The makespan comes from the server's own timestamps, so how often we look does not change
# it; looking more often would only add load to the service being measured (a client polling
# every 20 ms cost the service 5-10% of a core).
POLL_SECONDS = 0.1
DEADLINE_SECONDS = 600.0
_FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class DeployFailedError(RuntimeError):
    """A deploy was refused, failed, or did not finish in time."""


@dataclass(frozen=True, slots=True)
class Submission:
    """A deploy request ready to send: a fresh unit of some shape."""

    unit_id: str
    body: bytes
    descriptor_bytes: int


@dataclass(frozen=True, slots=True)
class DeployRun:
    """The figures of one deploy."""

    unit_id: str
    operation_id: str
    makespan: float
    post_seconds: float
    service_cpu: float
    mock_cpu: float


def submission(spec: Shape, *, tag: str = "svc") -> Submission:
    unit_id = f"urn:dmb:dp:bench:{spec.name}-{tag}{uuid.uuid4().hex[:10]}:0"
    text = descriptor_yaml(descriptor(spec, unit_id))
    body = json.dumps({"descriptor": text}).encode()
    return Submission(unit_id, body, len(text.encode()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def deploy(client: httpx.Client, item: Submission, *, service_pid: int, mock_pid: int) -> DeployRun:
    """Submit, wait for the end, check it SUCCEEDED, read the server-side timestamps."""
    cpu_before = cpu_seconds(service_pid), cpu_seconds(mock_pid)
    started = time.perf_counter()
    response = client.post(
        "/v1/deployments", content=item.body, headers={"content-type": "application/json"}
    )
    post_seconds = time.perf_counter() - started
    if response.status_code != 202:
        raise DeployFailedError(f"{item.unit_id}: {response.status_code} {response.text[:1000]}")
    operation_id = response.json()["id"]
    _wait_until_final(client, item.unit_id)
    operation: dict[str, Any] = client.get(f"/v1/operations/{operation_id}").json()
    if operation["status"] != "SUCCEEDED":
        failed = [task for task in operation["tasks"] if task["status"] == "FAILED"]
        first = json.dumps(failed[0]["error"])[:1500] if failed else ""
        raise DeployFailedError(
            f"{item.unit_id} ({operation_id}): {operation['status']}: {operation['error']} {first}"
        )
    return DeployRun(
        unit_id=item.unit_id,
        operation_id=operation_id,
        makespan=(instant(operation["finishedAt"]) - instant(operation["createdAt"])),
        post_seconds=post_seconds,
        service_cpu=cpu_seconds(service_pid) - cpu_before[0],
        mock_cpu=cpu_seconds(mock_pid) - cpu_before[1],
    )


def _wait_until_final(client: httpx.Client, unit_id: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    params: dict[str, str | int] = {"deploymentUnitId": unit_id, "limit": 1}
    while time.monotonic() < deadline:
        items = client.get("/v1/operations", params=params).json()["items"]
        if items and items[0]["status"] in _FINAL:
            return
        time.sleep(POLL_SECONDS)
    raise DeployFailedError(f"{unit_id}: not finished after {DEADLINE_SECONDS:.0f} s")


def instant(value: str) -> float:
    """An ISO 8601 timestamp from the API, as seconds since the epoch."""
    return datetime.fromisoformat(value).timestamp()
