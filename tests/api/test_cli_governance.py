"""``provisioner validate`` and ``provisioner plan`` as CI pipelines use them, against the
real service on loopback; ``provisioner demo`` passing its own policies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.test_cli import descriptor_file, provisioner
from tests.conftest import ServiceFactory
from tests.support import ServerThread, component, free_port, unit

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def server(sqlite_url: str, service_factory: ServiceFactory, tmp_path: Path) -> ServerThread:
    """A service with a policy that denies a unit named 'forbidden' and warns on no owner."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "names.rego").write_text(
        "package provisioner.names\nimport rego.v1\n"
        'deny contains "this unit may not be deployed" if input.descriptor.name == "forbidden"\n'
        'warn contains "no owner" if not input.descriptor.dataProductOwner\n'
    )
    return service_factory(sqlite_url, policies=policies)


def test_validate_exits_0_for_a_valid_descriptor(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    path = descriptor_file(tmp_path, unit(unit_id, [component(f"{unit_id}:a")]))
    result = provisioner("validate", str(path), "--env", "qa", "--url", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: provisioner.names: no owner" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("valid for qa: 1 checked")


def test_validate_prints_every_problem_and_exits_1(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    a = f"{unit_id}:a"
    document = unit(unit_id, [component(a, invalid=["bucket taken", "no region"])])
    document["name"] = "forbidden"
    result = provisioner("validate", str(descriptor_file(tmp_path, document)), "--url", server.url)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"invalid: {a}: bucket taken" in lines
    assert f"invalid: {a}: no region" in lines
    assert "denied: provisioner.names: this unit may not be deployed" in lines
    assert lines[-1].startswith("INVALID for development")


def test_validate_exits_2_when_the_service_refuses_the_descriptor(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    document = unit(unit_id, [component("a", depends_on=["missing"])])
    result = provisioner("validate", str(descriptor_file(tmp_path, document)), "--url", server.url)
    assert result.returncode == 2
    assert "unknown component id 'missing'" in result.stderr


def test_plan_prints_each_step_with_its_change(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    """In dependency order, marked like terraform plan; nothing is deployed by it."""
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    document = unit(unit_id, [component(a), component(b, depends_on=[a])])
    path = descriptor_file(tmp_path, document)
    planned = provisioner("plan", str(path), "--url", server.url)
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[0] == f"DEPLOY {unit_id} 1.0.0 in development (dry run: nothing was changed)"
    creates = [line for line in lines if line.startswith("  + CREATE")]
    assert [line.split()[2] for line in creates] == [unit_id, a, b]
    assert f"      after {a}" in lines
    assert lines[-1] == "Plan: 3 to create, 0 to update, 0 unchanged, 0 to delete."

    assert provisioner("deploy", str(path), "--wait", "--url", server.url).returncode == 0
    document["components"][1]["version"] = "2.0.0"
    path.write_text(yaml.safe_dump(document))
    again = provisioner("plan", str(path), "--url", server.url)
    assert again.returncode == 0
    assert any(
        line.startswith(f"  ~ UPDATE    {b}") and "1.0.0 -> 2.0.0" in line
        for line in again.stdout.splitlines()
    )
    assert (
        again.stdout.splitlines()[-1] == "Plan: 0 to create, 1 to update, 2 unchanged, 0 to delete."
    )

    gone = provisioner("plan", str(path), "--undeploy", "--component", b, "--url", server.url)
    assert gone.returncode == 0, gone.stderr
    assert f"  - DELETE    {b}" in gone.stdout
    assert (
        gone.stdout.splitlines()[-1] == "Plan: 0 to create, 0 to update, 0 unchanged, 1 to delete."
    )


def test_plan_exits_2_for_a_request_the_policies_deny(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    document = unit(unit_id, [component(f"{unit_id}:a")])
    document["name"] = "forbidden"
    result = provisioner("plan", str(descriptor_file(tmp_path, document)), "--url", server.url)
    assert result.returncode == 2
    assert "provisioner.names: this unit may not be deployed" in result.stderr


def test_deploy_wait_shows_each_component_s_validation(
    server: ServerThread, tmp_path: Path, unit_id: str
) -> None:
    a, b = f"{unit_id}:a", f"{unit_id}:b"
    document: dict[str, Any] = unit(unit_id, [component(a), component(b, invalid="bucket taken")])
    result = provisioner(
        "deploy", str(descriptor_file(tmp_path, document)), "--wait", "--url", server.url
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.endswith(f"ok valid     {a}") for line in lines)
    assert any(line.endswith(f"!! invalid   {b}  bucket taken") for line in lines)
    assert any(f"{a}  (not run: validation failed)" in line for line in lines)
    assert "validation failed: 1 component(s) invalid" in result.stdout


def test_the_demo_deploys_its_example_under_its_policies(tmp_path: Path) -> None:
    """``provisioner demo --exit``: the example data product passes the example policies and
    deploys."""
    port, adapter_port = free_port(), free_port()
    env = {**os.environ, "PROVISIONER_LOG_LEVEL": "WARNING"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioner",
            "demo",
            "--exit",
            "--port",
            str(port),
            "--adapter-port",
            str(adapter_port),
            "--database-url",
            f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "operation SUCCEEDED" in result.stdout
    assert "urn:dmb:dp:sales:sales-analytics:0 in development: DEPLOYED" in result.stdout, (
        result.stdout.splitlines()[-14:]
    )
    assert "warning:" not in result.stderr
    assert (EXAMPLES / "policies" / "production.rego").is_file()
