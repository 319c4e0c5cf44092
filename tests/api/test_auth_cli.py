"""`provisioner token ...` and the client commands against a real `provisioner serve` with
authentication on; the refusal to serve without authentication beyond loopback; and no secret
in the service's log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.processes import ServiceProcess
from tests.support import component, free_port, unit, write_registry

pytestmark = pytest.mark.slow
TOKEN = re.compile(r"prov_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def provisioner(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_tokens_from_the_cli_authenticate_the_client_commands(
    sqlite_url: str,
    mock_adapter: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
    unit_id: str,
) -> None:
    """`token create` prints the secret and nothing else; `deploy` needs it (--token or
    PROVISIONER_TOKEN, --url or PROVISIONER_URL); `token list` never shows it; `revoke` ends
    it; and the service never logs it, nor the bad tokens it refused."""
    service = ServiceProcess(
        database_url=sqlite_url,
        registry=write_registry(tmp_path, mock_adapter),
        log=tmp_path / "service.log",
        auth="on",
    ).start()
    processes.append(service)
    db = {"PROVISIONER_DATABASE_URL": sqlite_url}
    created = provisioner(
        "token", "create", "ci-cli", "--scope", "deploy:development", "--scope", "read", **db
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert TOKEN.fullmatch(secret)
    assert created.stdout == secret + "\n"

    path = tmp_path / "descriptor.yaml"
    path.write_text(yaml.safe_dump(unit(unit_id, [component(f"{unit_id}:a")])))
    anonymous = provisioner("deploy", str(path), "--wait", "--url", service.url)
    assert anonymous.returncode == 5  # not authorised
    assert "refused (401)" in anonymous.stderr
    deployed = provisioner("deploy", str(path), "--wait", "--url", service.url, "--token", secret)
    assert deployed.returncode == 0, deployed.stderr
    status = provisioner(
        "status",
        unit_id,
        "--env",
        "development",
        PROVISIONER_URL=service.url,
        PROVISIONER_TOKEN=secret,
    )
    assert status.returncode == 0, status.stderr
    assert "DEPLOYED" in status.stdout

    listed = provisioner("token", "list", **db)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("ci-cli"))
    assert "deploy:development,read" in row
    assert row.split()[-1] == "active"
    assert row.split()[3] != "-"  # last used
    assert secret not in listed.stdout
    assert secret.removeprefix("prov_").split("_", 1)[1] not in listed.stdout

    assert provisioner("token", "revoke", "ci-cli", **db).returncode == 0
    again = provisioner("token", "revoke", "ci-cli", **db)
    assert again.returncode == 2
    assert "no active token is named 'ci-cli'" in again.stderr
    assert "ci-cli" not in provisioner("token", "list", **db).stdout
    assert "revoked" in provisioner("token", "list", "--all", **db).stdout

    made_up = "prov_0123456789abcdef_" + "Z" * 43
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLXRleHQ"
    for bad in (made_up, jwt_like):
        refused = httpx.get(
            f"{service.url}/v1/releases", headers={"authorization": f"Bearer {bad}"}
        )
        assert refused.status_code == 401
    log = service.log.read_text()
    assert "authentication_failed" in log
    for text in (secret, secret.removeprefix("prov_").split("_", 1)[1], made_up, jwt_like):
        assert text not in log


def test_bad_scopes_are_refused_by_token_create(sqlite_url: str) -> None:
    refused = provisioner(
        "token", "create", "x", "--scope", "write", PROVISIONER_DATABASE_URL=sqlite_url
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "'write' is not a scope" in refused.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        ([], {"PROVISIONER_HOST": "::"}),
        ([], {"PROVISIONER_HOST": "10.1.2.3"}),
    ],
)
def test_serving_with_auth_off_beyond_loopback_is_refused_in_one_line(
    args: list[str], env: dict[str, str], sqlite_url: str
) -> None:
    result = provisioner(
        "serve",
        *args,
        "--port",
        str(free_port()),
        PROVISIONER_AUTH="off",
        PROVISIONER_DATABASE_URL=sqlite_url,
        **env,
    )
    assert result.returncode == 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PROVISIONER_AUTH=off is allowed only on a loopback address" in lines[0]
