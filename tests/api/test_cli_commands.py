"""The client commands in-process (Typer's runner) against the real service on loopback and
the mock adapter: output, ``-o json`` shapes, and every exit code class."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from provisioner.cli import app
from provisioner.log import configure_logging
from tests.conftest import ServiceFactory
from tests.support import DEADLINE_SECONDS, ServerThread, component, free_port, unit

pytestmark = pytest.mark.slow


@pytest.fixture
def server(sqlite_url: str, service_factory: ServiceFactory) -> ServerThread:
    # The service runs in this process: its log goes to the test's stderr, not to the
    # command's captured stdout.
    configure_logging(fmt="console", level="WARNING")
    return service_factory(sqlite_url)


class Cli:
    """``provisioner ...`` in this process, against one server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Any:
        return self.runner.invoke(app, [*args, "--url", self.url], catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self(*args, "-o", "json")
        assert result.exit_code == 0, result.output
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise AssertionError(result.stdout) from None


@pytest.fixture
def cli(server: ServerThread) -> Cli:
    return Cli(server.url)


def write(tmp_path: Path, document: dict[str, Any], name: str = "descriptor.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return str(path)


def until(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def streams_open(url: str) -> int:
    """Event streams the service has open (its gauge on /metrics)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("provisioner_event_streams_open "):
            return int(float(line.split()[1]))
    return 0


def open_gate(mock_adapter: str, gate: str) -> None:
    assert httpx.post(f"{mock_adapter}/mock/gates/{gate}").status_code == 200


def test_help_lists_every_command_as_plain_text() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "deploy", "undeploy", "plan", "validate", "status", "releases", "operations",
        "operation", "events", "wait", "cancel", "retry", "token", "serve", "migrate",
        "mock-adapter", "demo",
    ):  # fmt: skip
        assert f"\n  {command} " in result.output
    deploy = CliRunner().invoke(app, ["deploy", "--help"])
    assert "--wait-for-lock [SECONDS]" in deploy.output
    assert "\x1b[" not in deploy.output
    assert "[bold" not in deploy.output


def test_deploy_wait_prints_plain_lines_and_json_shapes(
    cli: Cli, tmp_path: Path, unit_id: str
) -> None:
    """Off a terminal, --wait prints one plain line per transition (no ANSI codes); -o json
    prints the final operation, and status/releases/operations/operation/events their
    API shapes."""
    a = f"{unit_id}:a"
    path = write(tmp_path, unit(unit_id, [component(a)]))
    result = cli("deploy", path, "--wait")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert any(line.endswith(f"ok SUCCEEDED {a}") for line in result.stdout.splitlines())
    assert "operation SUCCEEDED: 2 succeeded" in result.stdout

    final = cli.json("deploy", path, "--wait")
    assert final["status"] == "SUCCEEDED"
    assert {task["componentId"] for task in final["tasks"]} == {unit_id, a}

    release = cli.json("status", unit_id, "--env", "development")
    assert release["status"] == "DEPLOYED"
    assert release["lastOperationId"] == final["id"]
    releases = cli.json("releases", "--env", "development", "--status", "DEPLOYED")
    assert unit_id in [item["deploymentUnitId"] for item in releases["items"]]
    assert "nextCursor" in releases
    listed = cli.json("operations", "--unit", unit_id)
    assert [item["status"] for item in listed["items"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert listed["items"][0]["id"] == final["id"]
    assert cli.json("operation", final["id"])["tasks"] == final["tasks"]
    events = cli.json("events", final["id"])
    assert events["items"][-1]["componentId"] is None
    assert events["items"][-1]["newStatus"] == "SUCCEEDED"

    text = cli("operations", "--unit", unit_id)
    assert text.stdout.splitlines()[0].split()[:3] == ["ID", "TYPE", "UNIT"]
    assert final["id"] in text.stdout
    shown = cli("operation", final["id"])
    assert f"operation:    {final['id']}" in shown.stdout
    assert any(line.startswith(a) and "SUCCEEDED" in line for line in shown.stdout.splitlines())


def test_exit_codes_of_refusals_and_failures(
    cli: Cli, tmp_path: Path, unit_id: str, server: ServerThread
) -> None:
    """1 failed, 2 invalid (a 422, a 404, an unreadable file), 5 unreachable; status --check
    exits 1 for a CORRUPT release; undeploy --ignore-missing exits 0 when nothing is there."""
    bad = write(tmp_path, unit(unit_id, [component("a", depends_on=["missing"])]), "bad.yaml")
    refused = cli("deploy", bad)
    assert refused.exit_code == 2
    assert "unknown component id 'missing'" in refused.stderr
    assert cli("deploy", str(tmp_path / "nowhere.yaml")).exit_code == 2
    assert cli("status", "urn:nothing", "--env", "development").exit_code == 2

    a = f"{unit_id}:a"
    failing = write(tmp_path, unit(unit_id, [component(a, fail="provision")]))
    failed = cli("deploy", failing, "--wait")
    assert failed.exit_code == 1
    checked = cli("status", unit_id, "--env", "development", "--check")
    assert checked.exit_code == 1
    assert "is CORRUPT, not DEPLOYED" in checked.stderr
    assert cli("status", unit_id, "--env", "development").exit_code == 0

    assert cli("undeploy", unit_id, "--env", "development", "--wait").exit_code == 0
    missing = cli("undeploy", unit_id, "--env", "development")
    assert missing.exit_code == 2
    ignored = cli("undeploy", unit_id, "--env", "development", "--ignore-missing", "-o", "json")
    assert ignored.exit_code == 0, ignored.output
    assert json.loads(ignored.stdout) is None
    assert "nothing to do" in ignored.stderr

    nowhere = Cli(f"http://127.0.0.1:{free_port()}")
    assert nowhere("operations").exit_code == 5


def test_busy_timeout_wait_for_lock_cancel_and_retry(
    cli: Cli, tmp_path: Path, unit_id: str, mock_adapter: str, server: ServerThread
) -> None:
    """3 when another operation is active (the message names it); 4 when --timeout passes
    (the operation goes on); --wait-for-lock waits the active one out and deploys; cancel
    and retry --wait."""
    gate = f"gate-{unit_id.rsplit(':', 1)[-1]}"
    a = f"{unit_id}:a"
    held = write(tmp_path, unit(unit_id, [component(a, gate=gate)]), "held.yaml")
    plain = write(tmp_path, unit(unit_id, [component(a)]), "plain.yaml")
    first = cli.json("deploy", held)

    busy = cli("deploy", plain)
    assert busy.exit_code == 3
    assert f"active operation: {first['id']}" in busy.stderr
    assert cli("plan", plain).exit_code == 3
    still = cli("deploy", plain, "--wait-for-lock", "0.3")
    assert still.exit_code == 3
    assert "still busy after waiting 0.3 s" in still.stderr

    timed_out = cli("wait", first["id"], "--timeout", "0.5")
    assert timed_out.exit_code == 4
    assert f"operation {first['id']} goes on" in timed_out.stderr
    assert f"provisioner cancel {first['id']}" in timed_out.stderr

    opener = threading.Thread(
        target=lambda: (until(lambda: streams_open(server.url) > 0), open_gate(mock_adapter, gate))
    )
    opener.start()
    waited = cli("deploy", plain, "--wait-for-lock", "--wait", "-o", "json")
    opener.join()
    assert waited.exit_code == 0, waited.output
    assert f"operation {first['id']} is active there: waiting for it" in waited.stderr
    assert json.loads(waited.stdout)["status"] == "SUCCEEDED"

    cancel_gate = f"{gate}-2"
    cancelled_doc = write(tmp_path, unit(unit_id, [component(a, gate=cancel_gate)]), "c.yaml")
    second = cli.json("deploy", cancelled_doc)
    cancelled = cli.json("cancel", second["id"])
    assert cancelled["cancelRequested"] is True
    assert cli("wait", second["id"]).exit_code == 1
    assert cli("cancel", second["id"]).exit_code == 3  # it already ended
    open_gate(mock_adapter, cancel_gate)
    retried = cli("retry", second["id"], "--wait")
    assert retried.exit_code == 0, retried.output
    assert "operation SUCCEEDED" in retried.stdout


def test_events_follow_prints_each_event_until_the_end(
    cli: Cli, tmp_path: Path, unit_id: str
) -> None:
    """events --follow -o json: one JSON event per line, in order, the last the end."""
    a = f"{unit_id}:a"
    operation = cli.json("deploy", write(tmp_path, unit(unit_id, [component(a, latencyMs=50)])))
    result = cli("events", operation["id"], "--follow", "-o", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["id"] for event in events] == sorted(event["id"] for event in events)
    assert events[-1]["componentId"] is None
    assert events[-1]["newStatus"] == "SUCCEEDED"
    assert any(event["componentId"] == a for event in events)


def test_events_follow_on_an_ended_operation_prints_its_whole_trail(
    cli: Cli, tmp_path: Path, unit_id: str
) -> None:
    """--follow on an operation that has ended already (as one that ends before the command
    looks does): every event, as --follow prints them, then exit 0."""
    a = f"{unit_id}:a"
    path = write(tmp_path, unit(unit_id, [component(a)]))
    operation = cli.json("deploy", path, "--wait")
    trail = cli.json("events", operation["id"])["items"]

    as_json = cli("events", operation["id"], "--follow", "-o", "json")
    as_text = cli("events", operation["id"], "--follow")

    assert as_json.exit_code == as_text.exit_code == 0, as_json.output + as_text.output
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == trail
    lines = as_text.stdout.splitlines()
    assert len(lines) == len(trail)
    assert a in lines[-2]
    assert "SUCCEEDED" in lines[-1]


def test_plan_and_validate_print_json(cli: Cli, tmp_path: Path, unit_id: str) -> None:
    a = f"{unit_id}:a"
    path = write(tmp_path, unit(unit_id, [component(a)]))
    planned = cli.json("plan", path)
    assert [step["change"] for step in planned["plan"]["steps"]] == ["CREATE", "CREATE"]
    report = cli.json("validate", path)
    assert report["valid"] is True
    invalid = write(tmp_path, unit(unit_id, [component(a, invalid="no")]), "invalid.yaml")
    assert cli("validate", invalid, "-o", "json").exit_code == 1
