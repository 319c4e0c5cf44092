"""Test helpers: loopback servers, descriptor builders, waiting on conditions."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

MOCK = "urn:test:itm:mock:0"  # registered: the mock adapter
SYSTEM = "urn:test:itm:system:0"  # registered: the mock adapter, for the unit itself
LIMITED = "urn:test:itm:limited:0"  # registered with maxConcurrency 2
DEAD = "urn:test:itm:dead:0"  # registered at a port where nothing listens, not validated
DEAD_VALIDATED = "urn:test:itm:dead-validated:0"  # the same, validated before deploys
SLOW = "urn:test:itm:slow:0"  # the mock adapter, with timeoutSeconds 1, not validated
UNKNOWN = "urn:test:itm:unknown:0"  # not registered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """A uvicorn server on a loopback port, in a thread with its own event loop."""

    def __init__(self, app: Any, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died while starting")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0, *, force: bool = False) -> None:
        """Shut down; ``force`` does not wait for requests still being answered."""
        self.server.should_exit = True
        self.server.force_exit = force
        self.thread.join(timeout)


def registry_yaml(mock_url: str) -> str:
    return f"""
techAdapters:
  - infrastructureTemplateId: {MOCK}
    url: {mock_url}
  - infrastructureTemplateId: {SYSTEM}
    url: {mock_url}
  - infrastructureTemplateId: {LIMITED}
    url: {mock_url}
    maxConcurrency: 2
  - infrastructureTemplateId: {DEAD}
    url: http://127.0.0.1:9
    # Its tests are about provisioning against an adapter that cannot be reached; validation
    # (which would refuse the deploy first) is tested with DEAD_VALIDATED.
    validateBeforeDeploy: false
  - infrastructureTemplateId: {DEAD_VALIDATED}
    url: http://127.0.0.1:9
  - infrastructureTemplateId: {SLOW}
    url: {mock_url}
    timeoutSeconds: 1
    # Its 1 s is for the provisioning under test, not to be spent on a validation too.
    validateBeforeDeploy: false
"""


def write_registry(directory: Path, mock_url: str, *, extra: str = "") -> Path:
    """The test registry (``extra``: more entries, YAML list items) in ``directory``."""
    path = directory / "registry.yaml"
    path.write_text(registry_yaml(mock_url) + extra)
    return path


def component(
    component_id: str,
    *,
    depends_on: list[str] | None = None,
    template: str = MOCK,
    kind: str = "workload",
    version: str | None = "1.0.0",
    **mock: Any,
) -> dict[str, Any]:
    """A component whose ``specific.mock`` is ``mock`` (latencyMs, mode, fail...)."""
    item: dict[str, Any] = {
        "id": component_id,
        "name": component_id.rsplit(":", 1)[-1],
        "kind": kind,
        "infrastructureTemplateId": template,
        "dependsOn": depends_on or [],
        "specific": {"mock": mock} if mock else {},
    }
    if version is not None:
        item["version"] = version
    return item


def unit(
    unit_id: str,
    components: list[dict[str, Any]],
    *,
    environment: str = "development",
    version: str = "1.0.0",
    template: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": unit_id,
        "name": unit_id.rsplit(":", 1)[-1],
        "kind": "dataproduct",
        "version": version,
        "environment": environment,
        "components": components,
        **extra,
    }
    if template is not None:
        document["infrastructureTemplateId"] = template
    return document


# How long a condition may take before a test fails. Generous on purpose: on a loaded machine
# (2 cores shared by several test runs) starting a service process alone can take 5-10 s. A
# test that passes waits only as long as the condition takes; only a failing one waits it out.
DEADLINE_SECONDS = 60.0


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    interval: float = 0.02,
) -> Any:
    """Poll ``check`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_seconds} s (last: {value!r})")
        await asyncio.sleep(interval)


async def finished_operation(
    client: httpx.AsyncClient, operation_id: str, *, deadline_seconds: float = DEADLINE_SECONDS
) -> dict[str, Any]:
    """Wait until the operation has ended; return it."""

    async def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/v1/operations/{operation_id}")).json()
        return body if body["status"] in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    result: dict[str, Any] = await wait_until(ended, deadline_seconds=deadline_seconds)
    return result


def tasks_by_id(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["componentId"]: task for task in operation["tasks"]}


async def submit(client: httpx.AsyncClient, document: dict[str, Any], **body: Any) -> str:
    """POST a deploy; return the operation id."""
    response = await client.post("/v1/deployments", json={"descriptor": document, **body})
    assert response.status_code == 202, response.text
    operation_id: str = response.json()["id"]
    return operation_id


async def calls_received(
    mock: httpx.AsyncClient, component_id: str, action: str = "provision"
) -> int:
    """How many ``action`` POSTs for the component the mock adapter has received so far
    (answered or not: a call held by a gate counts)."""
    calls = (await mock.get("/mock/calls", params={"action": action})).json()["calls"]
    return sum(call["componentId"] == component_id for call in calls)


async def open_gate(mock: httpx.AsyncClient, gate: str) -> None:
    """Let the mock adapter answer every call held by ``specific.mock.gate: <gate>``, and any
    that reaches the gate later."""
    response = await mock.post(f"/mock/gates/{gate}")
    assert response.status_code == 200, response.text


async def task_status(client: httpx.AsyncClient, operation_id: str, component_id: str) -> str:
    operation = (await client.get(f"/v1/operations/{operation_id}")).json()
    status: str = tasks_by_id(operation)[component_id]["status"]
    return status


async def assert_consistent(
    client: httpx.AsyncClient,
    mock: httpx.AsyncClient,
    unit_id: str,
    *,
    environment: str = "development",
) -> None:
    """No operation of the unit is left active, and every component the provisioner calls
    DEPLOYED or NOT_DEPLOYED is what the adapter believes (CORRUPT admits either)."""
    listing = (await client.get("/v1/operations", params={"deploymentUnitId": unit_id})).json()
    assert all(item["status"] not in ("PENDING", "RUNNING") for item in listing["items"])
    release = (
        await client.get(f"/v1/deployment-units/{unit_id}/environments/{environment}")
    ).json()
    adapter_view = (await mock.get("/mock/components")).json()
    for item in release["components"]:
        seen = adapter_view.get(item["componentId"], {"provisioned": False})
        if item["status"] == "DEPLOYED":
            assert seen["provisioned"], item["componentId"]
        elif item["status"] == "NOT_DEPLOYED":
            assert not seen["provisioned"], item["componentId"]
        else:
            assert item["status"] == "CORRUPT", item
