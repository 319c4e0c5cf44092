"""The ``provisioner`` command as a process: Ctrl-C while waiting, and ``serve`` refusing to
start, each cause with one line on stderr and an exit code of its own."""

from __future__ import annotations

import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ServiceFactory
from tests.processes import START_SECONDS
from tests.support import DEADLINE_SECONDS, component, free_port, unit, write_registry

pytestmark = pytest.mark.slow


def _streams_open(url: str) -> int:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("provisioner_event_streams_open "):
            return int(float(line.split()[1]))
    return 0


def test_ctrl_c_while_waiting_says_the_operation_goes_on(
    sqlite_url: str,
    service_factory: ServiceFactory,
    tmp_path: Path,
    unit_id: str,
    mock_adapter: str,
) -> None:
    """SIGINT to `deploy --wait` while it follows the operation: exit 130, and stderr says the
    operation goes on and how to follow or cancel it; the operation does go on."""
    server = service_factory(sqlite_url)
    gate = f"sigint-{unit_id.rsplit(':', 1)[-1]}"
    path = tmp_path / "descriptor.yaml"
    path.write_text(yaml.safe_dump(unit(unit_id, [component(f"{unit_id}:a", gate=gate)])))
    # A process started in the background by a non-interactive shell (`cmd &`, as CI runners
    # and nohup do) inherits SIGINT ignored, and so would the command: it gets Ctrl-C's usual
    # handler back first, as under an interactive shell. faulthandler: a command that does not
    # stop is made to say where it is (SIGABRT).
    interactive = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('provisioner', run_name='__main__', alter_sys=True)"
    )
    command = [sys.executable, "-X", "faulthandler", "-c", interactive, "deploy", str(path)]
    process = subprocess.Popen(
        [*command, "--wait", "--url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while _streams_open(server.url) == 0:  # the command is following the event stream
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stdout, stderr = process.communicate(timeout=DEADLINE_SECONDS)
            raise AssertionError(f"still running after SIGINT:\n{stdout}\n{stderr}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()  # reaped, its pipes closed: nothing leaks into the next test
    operation_id = stdout.split("operation ", 1)[1].split()[0]
    assert process.returncode == 130, stderr
    assert f"stopped waiting: operation {operation_id} goes on" in stderr
    assert f"provisioner wait {operation_id}" in stderr
    assert f"provisioner cancel {operation_id}" in stderr
    assert "Traceback" not in stderr
    assert httpx.get(f"{server.url}/v1/operations/{operation_id}").json()["status"] == "RUNNING"
    assert httpx.post(f"{mock_adapter}/mock/gates/{gate}").status_code == 200


def test_deploy_wait_on_a_terminal_draws_a_live_table(
    sqlite_url: str, service_factory: ServiceFactory, tmp_path: Path, unit_id: str
) -> None:
    """On a terminal, `deploy --wait` draws the table (component, status, elapsed, message)
    and redraws it as events arrive, then prints the summary."""
    server = service_factory(sqlite_url)
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    document = unit(unit_id, [component(a), component(b, depends_on=[a], fail="provision")])
    path = tmp_path / "descriptor.yaml"
    path.write_text(yaml.safe_dump(document))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "deploy", str(path), "--wait", "--url", server.url],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm"},
    )
    os.close(terminal)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(DEADLINE_SECONDS) == 1
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # drawn and redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"COMPONENT\s+STATUS\s+ELAPSED\s+MESSAGE", plain)
    assert re.search(re.escape(b) + r"\s+FAILED\s+\d+\.\ds\s+the Tech Adapter", plain)
    assert "operation FAILED: 1 failed, 2 succeeded" in plain


def _bad_policies(tmp_path: Path) -> dict[str, str]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.rego").write_text("package provisioner.broken\ndeny contains if {\n")
    return {"PROVISIONER_POLICIES": str(policies)}


def _bad_registry(tmp_path: Path) -> dict[str, str]:
    registry = tmp_path / "registry.yaml"
    registry.write_text("techAdapters:\n  - infrastructureTemplateId: x\n    url: ftp://nowhere\n")
    return {"PROVISIONER_CONFIG": str(registry)}


def _unreachable_database(_tmp_path: Path) -> dict[str, str]:
    return {"PROVISIONER_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"}


@pytest.mark.parametrize(
    ("environment", "code", "says"),
    [
        (_bad_registry, 11, "provisioner: bad registry: "),
        (_bad_policies, 12, "provisioner: bad policy: "),
        (_unreachable_database, 13, "provisioner: cannot use the database postgresql+asyncpg://"),
        (lambda _: {"PROVISIONER_HOST": "0.0.0.0"}, 15, "PROVISIONER_AUTH=off is allowed only"),
        (lambda _: {"PROVISIONER_PORT": "not-a-port"}, 10, "invalid settings: PROVISIONER_PORT"),
    ],
    ids=["registry", "policy", "database", "auth-off-public", "settings"],
)
def test_serve_refuses_to_start_in_one_line(
    environment: object, code: int, says: str, tmp_path: Path, sqlite_url: str, mock_adapter: str
) -> None:
    env = {
        **os.environ,
        "PROVISIONER_DATABASE_URL": sqlite_url,
        "PROVISIONER_CONFIG": str(write_registry(tmp_path, mock_adapter)),
        "PROVISIONER_PORT": str(free_port()),
        "PROVISIONER_AUTH": "off",
        **environment(tmp_path),  # type: ignore[operator]
    }
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "serve"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
        env=env,
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result.stderr
    assert says in lines[0]


def test_serve_refuses_a_port_in_use(tmp_path: Path, sqlite_url: str, mock_adapter: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "provisioner", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
            env={
                **os.environ,
                "PROVISIONER_DATABASE_URL": sqlite_url,
                "PROVISIONER_CONFIG": str(write_registry(tmp_path, mock_adapter)),
            },
        )
    assert result.returncode == 14, result.stderr
    assert result.stderr.strip() == (
        f"provisioner: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_migrate_reports_an_unreachable_database_in_one_line() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "migrate"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
        env={**os.environ, "PROVISIONER_DATABASE_URL": url},
    )
    assert result.returncode == 13, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"provisioner: cannot use the database {url}: ")
