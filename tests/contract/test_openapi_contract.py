"""The OpenAPI document tells the truth: schemathesis, with every check, against the real
service (``provisioner serve`` on loopback, SQLite, authentication on, the mock Tech Adapter
registered), reading the document the service serves, which is the exported one.

Bounded and repeatable: a fixed seed, a number of examples per operation and of stateful
steps (``schemathesis.toml`` beside this file), a deadline for the whole run. Any finding
fails the test, with schemathesis's report (each finding with a curl line to reproduce it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from provisioner.api.routes.operations import EXAMPLE_DESCRIPTOR
from tests.processes import ServiceProcess

pytestmark = [pytest.mark.slow, pytest.mark.contract]

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CONFIG = HERE / "schemathesis.toml"
EXPORTED = ROOT / "openapi" / "openapi.json"
# Measured at 63 s on 2 cores at load average 8 (docs/decisions.md); the deadline stops a hang.
DEADLINE_SECONDS = 300
SCOPES = ("admin", "deploy:*", "validate")


def write_contract_registry(directory: Path, mock_url: str) -> Path:
    """A registry of the documented example's Tech Adapters, all the mock adapter: the
    example deploys (so the stateful phase has operations to follow), and no adapter is one
    that cannot be reached (whose documented 502 the server-error check would count)."""
    templates = sorted({c["infrastructureTemplateId"] for c in EXAMPLE_DESCRIPTOR["components"]})
    entries = "".join(
        f"  - infrastructureTemplateId: {template}\n    url: {mock_url}\n" for template in templates
    )
    path = directory / "registry.yaml"
    path.write_text(f"techAdapters:\n{entries}", encoding="utf-8")
    return path


def create_token(database_url: str) -> str:
    scopes = [arg for scope in SCOPES for arg in ("--scope", scope)]
    created = subprocess.run(
        [sys.executable, "-m", "provisioner", "token", "create", "contract", *scopes],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PROVISIONER_DATABASE_URL": database_url},
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_the_service_behaves_as_its_openapi_document_says(
    sqlite_url: str, mock_adapter: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Every schemathesis check (status codes, content types, headers, response schemas,
    schema-valid requests accepted and invalid ones refused, authentication not ignored,
    405 with Allow) on every operation, and the links from an accepted operation followed:
    no finding."""
    token = create_token(sqlite_url)
    service = ServiceProcess(
        database_url=sqlite_url,
        registry=write_contract_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
        auth="on",
        log_level="WARNING",
    ).start()
    processes.append(service)
    served = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    assert served == json.loads(EXPORTED.read_text(encoding="utf-8")), (
        "openapi/openapi.json is not what the service serves: "
        "run `python -m provisioner.api.openapi`"
    )

    began = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,  # the schemathesis of the environment running the tests
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
        cwd=tmp_path,  # its cache and reports stay out of the repository
        env={**os.environ, "PROVISIONER_CONTRACT_TOKEN": token},
    )
    seconds = time.monotonic() - began
    report = run.stdout[-20000:] + run.stderr[-5000:]
    print(run.stdout)  # shown with -rP: the phases, the links covered, the time taken
    assert run.returncode == 0, f"schemathesis found disagreements ({seconds:.0f} s):\n{report}"
    assert "No issues found" in run.stdout or " passed" in run.stdout, report
