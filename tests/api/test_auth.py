"""Authentication on (the default), with API tokens, against the real service on loopback:
who gets 401, who gets 403 and for which scope, each scope's reach, and who is recorded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from provisioner.api.app import create_app
from provisioner.api.security import metrics_access
from provisioner.auth.tokens import create_token, list_tokens, revoke_token
from provisioner.settings import Settings
from provisioner.store.database import Database
from tests.support import (
    ServerThread,
    component,
    finished_operation,
    unit,
    wait_until,
    write_registry,
)

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Secured:
    url: str
    database_url: str


def secured_settings(database_url: str, registry: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "config": registry,
        "replica_id": f"auth-{uuid.uuid4().hex[:8]}",
        "poll_initial_seconds": 0.02,
        "poll_max_seconds": 0.2,
        "shutdown_grace_seconds": 1.0,
        "log_level": "WARNING",
        "auth": "on",
    }
    return Settings(database_url=database_url, **(values | overrides))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, mock_adapter: str) -> Iterator[Secured]:
    """One service with authentication on, for the whole module (tests use their own units)."""
    directory = tmp_path_factory.mktemp("auth")
    database_url = f"sqlite+aiosqlite:///{directory / 'provisioner.db'}"
    settings = secured_settings(database_url, write_registry(directory, mock_adapter))
    server = ServerThread(create_app(settings)).start()
    yield Secured(server.url, database_url)
    server.stop()


async def token(secured: Secured, *scopes: str, name: str | None = None, **options: Any) -> str:
    """A new API token's secret (its name is unique unless given)."""
    database = Database(secured.database_url)
    try:
        created = await create_token(
            database, name or f"t-{uuid.uuid4().hex[:8]}", scopes, **options
        )
    finally:
        await database.dispose()
    return created.secret


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
async def http(secured: Secured) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as client:
        yield client


async def finished(secured: Secured, headers: dict[str, str], operation_id: str) -> Any:
    async with httpx.AsyncClient(base_url=secured.url, timeout=30, headers=headers) as client:
        return await finished_operation(client, operation_id)


def assert_unauthorized(response: httpx.Response, *, challenge: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:provisioner:problem:unauthorized"


def assert_forbidden(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["requiredScope"] == scope
    assert scope in body["detail"]
    assert response.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{scope}"'
    )


async def test_health_checks_need_no_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200


async def test_no_credentials_get_401_with_a_bearer_challenge(http: httpx.AsyncClient) -> None:
    """Reads, writes and the body-reading routes alike, before any body is read."""
    assert_unauthorized(await http.get("/v1/releases"), challenge="Bearer")
    assert_unauthorized(await http.get("/v1/operations/x"), challenge="Bearer")
    assert_unauthorized(
        await http.post("/v1/deployments", content=b"{not json", headers={"content-type": "a/b"}),
        challenge="Bearer",
    )
    assert_unauthorized(
        await http.get("/v1/releases", headers={"authorization": "Basic dXNlcjpwdw=="}),
        challenge="Bearer",
    )
    for path in ("/v1/undeployments", "/v1/reverse-provisioning"):
        malformed = await http.post(
            path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_unauthorized(malformed, challenge="Bearer")
    acl = "/v1/deployment-units/u/environments/e/components/c/acl"
    assert_unauthorized(
        await http.post(acl, json={"refs": "x"}, headers=bearer("prov_bad")),
        challenge='Bearer error="invalid_token"',
    )


async def test_bad_tokens_get_401(secured: Secured, http: httpx.AsyncClient) -> None:
    """Garbage, a malformed token, a wrong secret, an unknown id: invalid_token, each."""
    real = await token(secured, "read")
    wrong_secret = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    unknown_id = "prov_" + "f" * 16 + real[-44:]
    for bad in ("nonsense", "prov_123_abc", wrong_secret, unknown_id, "a.b.c"):
        response = await http.get("/v1/releases", headers=bearer(bad))
        assert_unauthorized(response, challenge='Bearer error="invalid_token"')
    assert (await http.get("/v1/releases", headers=bearer(real))).status_code == 200


async def test_an_expired_token_gets_401(secured: Secured, http: httpx.AsyncClient) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    expired = await token(secured, "read", expires_in_days=2, now=long_ago)
    response = await http.get("/v1/releases", headers=bearer(expired))
    assert_unauthorized(response, challenge='Bearer error="invalid_token"')
    assert "expired" in response.json()["detail"]


async def test_a_revoked_token_stops_working(secured: Secured, http: httpx.AsyncClient) -> None:
    """Revoked in the database (as `provisioner token revoke` does), refused within seconds."""
    name = f"revoked-{uuid.uuid4().hex[:6]}"
    secret = await token(secured, "read", name=name)
    assert (await http.get("/v1/releases", headers=bearer(secret))).status_code == 200
    database = Database(secured.database_url)
    try:
        await revoke_token(database, name)
    finally:
        await database.dispose()

    async def refused() -> bool:
        return (await http.get("/v1/releases", headers=bearer(secret))).status_code == 401

    await wait_until(refused)


async def test_a_scope_the_principal_lacks_gets_403_naming_it(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    reader = await token(secured, "read")
    document = unit(unit_id, [component(f"{unit_id}:a")])
    assert_forbidden(
        await http.post("/v1/validations", json={"descriptor": document}, headers=bearer(reader)),
        "validate",
    )
    assert_forbidden(
        await http.post("/v1/deployments", json={"descriptor": document}, headers=bearer(reader)),
        "deploy:development",
    )
    assert_forbidden(
        await http.post(
            "/v1/reverse-provisioning",
            json=reverse_body(),
            headers=bearer(reader),
        ),
        "admin",
    )
    acl = f"/v1/deployment-units/{unit_id}/environments/qa/components/{unit_id}:a/acl"
    assert_forbidden(
        await http.post(acl, json={"refs": ["user:a"]}, headers=bearer(reader)), "deploy:qa"
    )
    nothing = await token(secured, "validate")
    assert (await http.get("/v1/releases", headers=bearer(nothing))).status_code == 200


async def test_deploy_scopes_are_per_environment(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    """deploy:development cannot deploy to production; deploy:* can; the environment is the
    request's, else the descriptor's."""
    dev = bearer(await token(secured, "deploy:development"))
    anywhere = bearer(await token(secured, "deploy:*"))
    production = unit(unit_id, [component(f"{unit_id}:a")], environment="production")
    assert_forbidden(
        await http.post("/v1/deployments", json={"descriptor": production}, headers=dev),
        "deploy:production",
    )
    in_yaml = await http.post(
        "/v1/deployments?environment=production",
        content=b"id: x\n",
        headers={**dev, "content-type": "application/yaml"},
    )
    assert_forbidden(in_yaml, "deploy:production")
    accepted = await http.post("/v1/deployments", json={"descriptor": production}, headers=anywhere)
    assert accepted.status_code == 202, accepted.text
    await finished(secured, anywhere, accepted.json()["id"])
    undeploy = {"deploymentUnitId": unit_id, "environment": "production", "removeData": False}
    assert_forbidden(
        await http.post("/v1/undeployments", json=undeploy, headers=dev), "deploy:production"
    )
    development = unit(unit_id, [component(f"{unit_id}:a")])
    ok = await http.post("/v1/deployments", json={"descriptor": development}, headers=dev)
    assert ok.status_code == 202, ok.text


async def test_read_cannot_cancel_or_retry_and_the_operation_s_environment_decides(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    """Cancel and retry need deploy:<the operation's environment>, read from the store."""
    deployer = bearer(await token(secured, "deploy:development"))
    reader = bearer(await token(secured, "read"))
    elsewhere = bearer(await token(secured, "deploy:production"))
    slow = unit(unit_id, [component(f"{unit_id}:slow", latencyMs=3000)])
    submitted = await http.post("/v1/deployments", json={"descriptor": slow}, headers=deployer)
    operation_id = submitted.json()["id"]
    cancel = f"/v1/operations/{operation_id}/cancel"
    assert_forbidden(await http.post(cancel, headers=reader), "deploy:development")
    assert_forbidden(await http.post(cancel, headers=elsewhere), "deploy:development")
    assert (await http.get(f"/v1/operations/{operation_id}", headers=reader)).status_code == 200
    assert (await http.post(cancel, headers=deployer)).status_code == 202
    retry = f"/v1/operations/{operation_id}/retry"
    await finished(secured, reader, operation_id)
    assert_forbidden(await http.post(retry, headers=reader), "deploy:development")
    missing = await http.post("/v1/operations/nope/cancel", headers=deployer)
    assert missing.status_code == 404


def reverse_body() -> dict[str, Any]:
    return {
        "infrastructureTemplateId": "urn:test:itm:mock:0",
        "useCaseTemplateId": "urn:test:uc:0",
        "environment": "development",
        "params": {"table": "t"},
        "catalogInfo": {},
    }


async def test_admin_reaches_reverse_provisioning_and_validate_validates(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    admin = bearer(await token(secured, "admin"))
    deployer = bearer(await token(secured, "deploy:*"))
    reverse = await http.post("/v1/reverse-provisioning", json=reverse_body(), headers=admin)
    assert reverse.status_code == 200, reverse.text
    assert reverse.json()["status"] == "COMPLETED"
    assert_forbidden(
        await http.post("/v1/reverse-provisioning", json=reverse_body(), headers=deployer),
        "admin",
    )
    validator = bearer(await token(secured, "validate"))
    document = unit(unit_id, [component(f"{unit_id}:a")])
    checked = await http.post("/v1/validations", json={"descriptor": document}, headers=validator)
    assert checked.status_code == 200
    assert checked.json()["valid"] is True


async def test_the_principal_is_recorded_on_the_operation_and_its_events(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    """requestedBy is the token's name; every event carries the principal it happened for,
    the cancel request its own."""
    ci = bearer(await token(secured, "deploy:development", name=f"ci-{unit_id[-8:]}"))
    oncall = bearer(await token(secured, "deploy:*", name=f"oncall-{unit_id[-8:]}"))
    document = unit(
        unit_id,
        [component(f"{unit_id}:a"), component(f"{unit_id}:b", latencyMs=5000)],
    )
    operation_id = (
        await http.post("/v1/deployments", json={"descriptor": document}, headers=ci)
    ).json()["id"]

    async def b_running() -> bool:
        body = (await http.get(f"/v1/operations/{operation_id}", headers=ci)).json()
        return any(t["status"] == "RUNNING" for t in body["tasks"])

    await wait_until(b_running)
    assert (await http.post(f"/v1/operations/{operation_id}/cancel", headers=oncall)).is_success
    final = await finished(secured, ci, operation_id)
    assert final["requestedBy"] == f"ci-{unit_id[-8:]}"
    events = (await http.get(f"/v1/operations/{operation_id}/events", headers=ci)).json()["items"]
    principals = {event["principal"] for event in events}
    assert principals == {f"ci-{unit_id[-8:]}", f"oncall-{unit_id[-8:]}"}
    asked = [e for e in events if e["principal"] == f"oncall-{unit_id[-8:]}"]
    assert len(asked) == 1


async def test_the_last_use_of_a_token_is_recorded(
    secured: Secured, http: httpx.AsyncClient
) -> None:
    name = f"used-{uuid.uuid4().hex[:6]}"
    secret = await token(secured, "read", name=name)
    database = Database(secured.database_url)
    try:
        before = {t.name: t for t in await list_tokens(database)}[name]
        assert before.last_used_at is None
        assert (await http.get("/v1/releases", headers=bearer(secret))).status_code == 200
        after = {t.name: t for t in await list_tokens(database)}[name]
    finally:
        await database.dispose()
    assert after.last_used_at is not None
    assert after.last_used_at >= before.created_at


@pytest.mark.parametrize("mode", ["token", "open"])
async def test_metrics_take_a_token_or_are_open_by_setting(
    mode: str, tmp_path: Any, mock_adapter: str
) -> None:
    """The dependency a /metrics route declares follows PROVISIONER_METRICS_AUTH."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"
    settings = secured_settings(
        database_url, write_registry(tmp_path, mock_adapter), metrics_auth=mode
    )
    app: FastAPI = create_app(settings)

    @app.get("/metrics", dependencies=[Depends(metrics_access)])
    async def metrics() -> dict[str, str]:
        return {"metrics": "here"}

    server = ServerThread(app).start()
    try:
        secret = await token(Secured(server.url, database_url), "read")
        nothing = await token(Secured(server.url, database_url), "validate")
        async with httpx.AsyncClient(base_url=server.url) as client:
            anonymous = await client.get("/metrics")
            with_token = await client.get("/metrics", headers=bearer(secret))
            wrong = await client.get("/metrics", headers=bearer("prov_garbage"))
            other_scope = await client.get("/metrics", headers=bearer(nothing))
    finally:
        server.stop()
    assert with_token.status_code == 200
    assert other_scope.status_code == 200  # every scope implies read
    if mode == "open":
        assert anonymous.status_code == 200
        assert wrong.status_code == 200
    else:
        assert_unauthorized(anonymous, challenge="Bearer")
        assert_unauthorized(wrong, challenge='Bearer error="invalid_token"')


async def test_a_dry_run_needs_validate_and_a_deploy_needs_deploy(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    """``validate`` may ask what a deploy or an undeploy would do, not do it; ``deploy:ENV``
    without ``validate`` may deploy there but not dry-run."""
    validator = bearer(await token(secured, "validate"))
    deployer = bearer(await token(secured, "deploy:development"))
    body = {"descriptor": unit(unit_id, [component(f"{unit_id}:a")])}
    planned = await http.post(
        "/v1/deployments", params={"dryRun": "true"}, json=body, headers=validator
    )
    assert planned.status_code == 200, planned.text
    assert [step["change"] for step in planned.json()["plan"]["steps"]] == ["CREATE", "CREATE"]
    assert_forbidden(
        await http.post("/v1/deployments", json=body, headers=validator), "deploy:development"
    )
    assert_forbidden(
        await http.post("/v1/deployments", params={"dryRun": "true"}, json=body, headers=deployer),
        "validate",
    )
    undeploy = {"deploymentUnitId": unit_id, "environment": "development"}
    assert_forbidden(
        await http.post(
            "/v1/undeployments", params={"dryRun": "true"}, json=undeploy, headers=deployer
        ),
        "validate",
    )
    deployed = await http.post("/v1/deployments", json=body, headers=deployer)
    assert deployed.status_code == 202, deployed.text


async def test_acl_updates_and_overrides_record_who_asked_and_repair_needs_admin(
    secured: Secured, http: httpx.AsyncClient, unit_id: str
) -> None:
    """An ACL update is requested by the deploy token's name (on the operation and its
    events); marking a component by hand needs ``admin`` (403 for a deployer) and records the
    admin as requestedBy."""
    suffix = unit_id[-8:]
    ci = bearer(await token(secured, "deploy:development", name=f"acl-ci-{suffix}"))
    admin = bearer(await token(secured, "admin", name=f"acl-admin-{suffix}"))
    port, broken = f"{unit_id}:port", f"{unit_id}:broken"
    document = unit(unit_id, [component(port), component(broken, fail="provision")])
    deploy = await http.post("/v1/deployments", json={"descriptor": document}, headers=ci)
    await finished(secured, ci, deploy.json()["id"])
    base = f"/v1/deployment-units/{unit_id}/environments/development/components"

    granted = await http.post(f"{base}/{port}/acl", json={"refs": ["user:a"]}, headers=ci)
    assert granted.status_code == 202, granted.text
    operation = await finished(secured, ci, granted.json()["id"])
    assert operation["requestedBy"] == f"acl-ci-{suffix}"
    events = (await http.get(f"/v1/operations/{operation['id']}/events", headers=ci)).json()
    assert {event["principal"] for event in events["items"]} == {f"acl-ci-{suffix}"}

    repair = {"status": "DEPLOYED", "reason": "fixed by hand"}
    assert_forbidden(await http.post(f"{base}/{broken}/status", json=repair, headers=ci), "admin")
    repaired = await http.post(f"{base}/{broken}/status", json=repair, headers=admin)
    assert repaired.status_code == 201, repaired.text
    assert repaired.json()["requestedBy"] == f"acl-admin-{suffix}"
    assert repaired.json()["reason"] == "fixed by hand"
