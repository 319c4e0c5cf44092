"""The rules of authorisation and exposure, and the settings that turn them on."""

from __future__ import annotations

import pytest

from provisioner.api.app import create_app
from provisioner.api.security import route_scopes, undeclared_routes
from provisioner.auth.exposure import exposure_problem, is_loopback_host
from provisioner.auth.oidc import OidcPolicy, scopes_from
from provisioner.auth.scopes import Principal, PrincipalKind, scope_problem
from provisioner.errors import ConfigurationError, PermissionDeniedError
from provisioner.log import redact_secrets
from provisioner.settings import Settings


def principal(*scopes: str) -> Principal:
    return Principal("someone", frozenset(scopes), PrincipalKind.TOKEN)


@pytest.mark.parametrize(
    ("scopes", "needed", "granted"),
    [
        (("read",), "read", True),
        (("validate",), "read", True),  # every scope implies read
        (("deploy:dev",), "read", True),
        ((), "read", False),
        (("read",), "validate", False),
        (("read",), "deploy:dev", False),
        (("deploy:dev",), "deploy:dev", True),
        (("deploy:dev",), "deploy:production", False),
        (("deploy:*",), "deploy:production", True),
        (("admin",), "deploy:dev", False),  # admin does not deploy
        (("deploy:*",), "admin", False),
        (("admin",), "admin", True),
    ],
)
def test_what_each_scope_grants(scopes: tuple[str, ...], needed: str, granted: bool) -> None:
    assert principal(*scopes).grants(needed) is granted


def test_a_missing_scope_is_named() -> None:
    with pytest.raises(PermissionDeniedError) as refused:
        principal("deploy:dev").check("deploy:production")
    assert refused.value.scope == "deploy:production"


def test_the_anonymous_principal_of_auth_off_may_do_everything() -> None:
    anonymous = Principal.anonymous()
    assert anonymous.name is None
    assert all(anonymous.grants(s) for s in ("read", "admin", "deploy:production", "validate"))


@pytest.mark.parametrize("scope", ["read", "validate", "admin", "deploy:*", "deploy:urn:env:1"])
def test_scopes_that_are_spelled_right(scope: str) -> None:
    assert scope_problem(scope) is None


@pytest.mark.parametrize("scope", ["write", "deploy:", "deploy:a/b", "deploy:a b", "READ", ""])
def test_scopes_that_are_not(scope: str) -> None:
    assert scope_problem(scope) is not None


def test_jwt_scopes_come_from_the_scope_claim_or_a_mapped_list_claim() -> None:
    policy = OidcPolicy(issuer="i", audience="a", jwks_url="https://idp/jwks")
    assert scopes_from({"scope": "openid read deploy:dev"}, policy) == {"read", "deploy:dev"}
    groups = OidcPolicy(
        issuer="i",
        audience="a",
        jwks_url="https://idp/jwks",
        scopes_claim="groups",
        scope_map={"platform": frozenset({"admin", "deploy:*"})},
    )
    assert scopes_from({"groups": ["platform", "other"]}, groups) == {"admin", "deploy:*"}
    assert scopes_from({"groups": ["read"]}, groups) == frozenset()  # only mapped values count
    assert scopes_from({"groups": "platform"}, groups) == {"admin", "deploy:*"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.10.0.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("my-host", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
    assert (exposure_problem(auth="off", host=host) is None) is loopback
    assert exposure_problem(auth="on", host=host) is None


def test_authentication_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_AUTH")
    assert Settings().auth == "on"
    assert Settings().metrics_auth == "token"


def test_the_app_refuses_auth_off_beyond_loopback() -> None:
    with pytest.raises(ConfigurationError, match="only on a loopback address"):
        create_app(Settings(auth="off", host="0.0.0.0"))


def test_oidc_settings_come_together_and_keys_over_https() -> None:
    with pytest.raises(ValueError, match="together"):
        Settings(oidc_issuer="https://idp/")
    with pytest.raises(ValueError, match="https"):
        Settings(
            oidc_issuer="https://idp/",
            oidc_audience="provisioner",
            oidc_jwks_url="http://idp.example/jwks",
        )
    allowed = Settings(
        oidc_issuer="https://idp/",
        oidc_audience="provisioner",
        oidc_jwks_url="http://127.0.0.1:9000/jwks",
    )
    assert allowed.oidc_enabled


def test_default_replica_ids_are_unique_per_process_and_not_explicit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROVISIONER_REPLICA_ID", raising=False)
    first, second = Settings(), Settings()
    assert first.replica_id != second.replica_id
    assert not first.replica_id_is_explicit
    monkeypatch.setenv("PROVISIONER_REPLICA_ID", "replica-a")
    assert Settings().replica_id == "replica-a"
    assert Settings().replica_id_is_explicit


# The README's rule table ("Security"): a new route is added here with its scope.
RULES = {
    "POST /v1/deployments": ["deploy:ENV, or validate for a dry run"],
    "POST /v1/undeployments": ["deploy:ENV, or validate for a dry run"],
    "GET /v1/operations/{operation_id}": ["read"],
    "GET /v1/operations": ["read"],
    "GET /v1/operations/{operation_id}/events": ["read"],
    "POST /v1/operations/{operation_id}/cancel": ["deploy:ENV"],
    "POST /v1/operations/{operation_id}/retry": ["deploy:ENV"],
    "GET /v1/deployment-units/{deployment_unit_id}/environments/{environment}": ["read"],
    "GET /v1/deployment-units/{deployment_unit_id}/environments/{environment}/components/"
    "{component_id}": ["read"],
    "GET /v1/releases": ["read"],
    "POST /v1/deployment-units/{deployment_unit_id}/environments/{environment}/components/"
    "{component_id}/acl": ["deploy:ENV"],
    "POST /v1/deployment-units/{deployment_unit_id}/environments/{environment}/components/"
    "{component_id}/status": ["admin"],
    "POST /v1/validations": ["validate"],
    "POST /v1/reverse-provisioning": ["admin"],
    "GET /v1/deployment-units/{deployment_unit_id}/environments/{environment}/publications": [
        "read"
    ],
    "GET /metrics": ["read, or open by PROVISIONER_METRICS_AUTH=open"],
    "GET /v1/tech-adapters": ["admin"],
    "GET /healthz": ["open"],
    "GET /readyz": ["open"],
    "GET /": ["open"],
    "GET /ui": ["open"],
    "GET /docs": ["open"],
    "GET /docs/oauth2-redirect": ["open"],
    "GET /redoc": ["open"],
}


def test_every_route_declares_its_scope_as_documented() -> None:
    """A route added without a scope dependency (``api.security``) fails here."""
    app = create_app(Settings())
    assert undeclared_routes(app) == []
    assert route_scopes(app) == RULES


def test_bearer_secrets_are_redacted_from_log_lines() -> None:
    token = "prov_0123456789abcdef_" + "x" * 43
    jwt_text = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    event = redact_secrets(
        None,
        "info",
        {
            "event": "request",
            "header": f"Authorization: Bearer {jwt_text}",
            "text": f"got {token} here",
            "authorization": "anything",
            "reason": "a bearer token is required",
        },
    )
    rendered = repr(event)
    assert token not in rendered
    assert jwt_text not in rendered
    assert event["authorization"] == "[redacted]"
    assert event["reason"] == "a bearer token is required"  # prose is left alone
