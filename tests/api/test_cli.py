"""The ``provisioner`` command as CI pipelines use it: exit codes and live progress."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ServiceFactory
from tests.processes import START_SECONDS
from tests.support import ServerThread, component, free_port, unit

pytestmark = pytest.mark.slow


def provisioner(*args: str, timeout: float = START_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def server(sqlite_url: str, service_factory: ServiceFactory) -> ServerThread:
    return service_factory(sqlite_url)


def descriptor_file(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "descriptor.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_deploy_wait_shows_progress_and_exits_0(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    """`deploy --wait` prints each component's transitions and exits 0 on success."""
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    path = descriptor_file(tmp_path, unit(unit_id, [component(a), component(b, depends_on=[a])]))
    result = provisioner("deploy", str(path), "--wait", "--url", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("RUNNING" in line and line.endswith(a) for line in lines)
    assert any("SUCCEEDED" in line and line.endswith(b) for line in lines)
    assert "operation SUCCEEDED: 3 succeeded" in result.stdout

    status = provisioner("status", unit_id, "--env", "development", "--url", server.url)
    assert status.returncode == 0
    assert f"{unit_id} in development: DEPLOYED" in status.stdout
    assert a in status.stdout


def test_deploy_prints_the_warnings_of_the_answer(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    """A key repeated with the same value is deployed, and the command says so on stderr."""
    path = descriptor_file(tmp_path, unit(unit_id, [component(f"{unit_id}:a")]))
    path.write_text(path.read_text() + "ownerGroup: g\nownerGroup: g\n")

    result = provisioner("deploy", str(path), "--url", server.url)

    assert result.returncode == 0, result.stderr
    assert "warning: descriptor.ownerGroup: duplicate key 'ownerGroup'" in result.stderr


def test_deploy_wait_exits_1_when_the_deployment_fails(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    document = unit(unit_id, [component(a, fail="provision"), component(b, depends_on=[a])])
    result = provisioner(
        "deploy", str(descriptor_file(tmp_path, document)), "--wait", "--url", server.url
    )
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert f"(blocked by {a})" in result.stdout


def test_a_refused_descriptor_exits_2_listing_the_problems(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    document = unit(unit_id, [component("a", depends_on=["missing"])])
    result = provisioner("deploy", str(descriptor_file(tmp_path, document)), "--url", server.url)
    assert result.returncode == 2
    assert "unknown component id 'missing'" in result.stderr


def test_undeploy_wait_and_status_of_an_unknown_unit(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    path = descriptor_file(tmp_path, unit(unit_id, [component(f"{unit_id}:a")]))
    assert provisioner("deploy", str(path), "--wait", "--url", server.url).returncode == 0
    result = provisioner(
        "undeploy", unit_id, "--env", "development", "--remove-data", "--wait", "--url", server.url
    )
    assert result.returncode == 0, result.stderr
    assert "UNDEPLOY" in result.stdout
    missing = provisioner("status", "urn:nothing", "--env", "development", "--url", server.url)
    assert missing.returncode == 2


def test_client_commands_report_an_unreachable_server() -> None:
    result = provisioner("status", "u", "--env", "e", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 5
    assert "cannot reach" in result.stderr


def test_migrate_brings_an_empty_database_to_the_latest_revision(tmp_path: Path) -> None:
    env_url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", "migrate"],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        check=False,
        env={"PROVISIONER_DATABASE_URL": env_url, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    assert (tmp_path / "fresh.db").stat().st_size > 0


def test_the_mock_adapter_command_serves_the_tech_adapter_api() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "mock-adapter", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/mock/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert response.json() == {"status": "ok"}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/provision", json={}).status_code == 400
    finally:
        process.terminate()
        process.wait(10)
