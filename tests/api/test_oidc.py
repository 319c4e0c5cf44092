"""Bearer JWTs from an OIDC issuer: a real JWKS server on loopback, keys made here (RS256 and
ES256), and every way a token can be wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from provisioner.api.app import create_app
from provisioner.settings import Settings
from tests.support import ServerThread, component, finished_operation, unit, write_registry

ISSUER = "https://idp.test/realms/data"
AUDIENCE = "provisioner"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OUTSIDE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # in no JWKS
ROTATED_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        return {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": kid, "use": "sig"}
    return {**ECAlgorithm.to_jwk(public, as_dict=True), "kid": kid, "use": "sig"}


@dataclass
class Jwks:
    """A JWKS endpoint whose keys a test changes, counting the fetches."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/jwks.json")
        async def jwks() -> dict[str, Any]:
            self.fetches += 1
            return {"keys": self.keys}

        return app


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@example.com",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "openid read deploy:development",
    }
    return {key: value for key, value in (base | overrides).items() if value is not None}


def signed(key: Any, kid: str | None, algorithm: str, **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], *, hmac_key: bytes | None = None) -> str:
    """A JWT built by hand, as an attacker would: unsigned, or HMAC-signed with ``hmac_key``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    if hmac_key is None:
        return signing_input + "."
    digest = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


def oidc_settings(tmp_path: Path, mock_adapter: str, jwks_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "config": write_registry(tmp_path, mock_adapter),
        "replica_id": f"oidc-{uuid.uuid4().hex[:8]}",
        "log_level": "WARNING",
        "auth": "on",
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": jwks_url,
        "poll_initial_seconds": 0.02,
        "poll_max_seconds": 0.2,
    }
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'provisioner.db'}",
        **(values | overrides),
    )


@dataclass(frozen=True)
class Issuer:
    jwks: Jwks
    url: str  # the JWKS URL


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    jwks = Jwks([jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")])
    server = ServerThread(jwks.app()).start()
    yield Issuer(jwks, f"{server.url}/jwks.json")
    server.stop()


@pytest.fixture(scope="module")
def service(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory, mock_adapter: str
) -> Iterator[str]:
    settings = oidc_settings(tmp_path_factory.mktemp("oidc"), mock_adapter, issuer.url)
    server = ServerThread(create_app(settings)).start()
    yield server.url
    server.stop()


@pytest.fixture
async def http(service: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_rs256_and_es256_tokens_signed_by_the_jwks_are_accepted(
    http: httpx.AsyncClient, unit_id: str
) -> None:
    """And the subject is who is recorded as having asked."""
    for token in (signed(RSA_KEY, "rsa-1", "RS256"), signed(EC_KEY, "ec-1", "ES256")):
        assert (await http.get("/v1/releases", headers=bearer(token))).status_code == 200
    token = signed(EC_KEY, "ec-1", "ES256", sub="bob")
    document = unit(unit_id, [component(f"{unit_id}:a")])
    response = await http.post(
        "/v1/deployments", json={"descriptor": document}, headers=bearer(token)
    )
    assert response.status_code == 202, response.text
    http.headers.update(bearer(token))
    final = await finished_operation(http, response.json()["id"])
    assert final["requestedBy"] == "bob"


async def test_expiry_has_a_small_leeway(http: httpx.AsyncClient) -> None:
    now = int(time.time())
    just_expired = signed(RSA_KEY, "rsa-1", "RS256", exp=now - 5, nbf=now - 60)
    assert (await http.get("/v1/releases", headers=bearer(just_expired))).status_code == 200


REFUSED = {
    "alg none": lambda: hand_made({"alg": "none", "kid": "rsa-1", "typ": "JWT"}),
    "HS256 keyed with the public key": lambda: hand_made(
        {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"},
        hmac_key=RSA_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ),
    "a key outside the JWKS, under a listed kid": lambda: signed(OUTSIDE_KEY, "rsa-1", "RS256"),
    "a key outside the JWKS, under its own kid": lambda: signed(OUTSIDE_KEY, "mine", "RS256"),
    "ES256 under the RSA key's kid": lambda: signed(EC_KEY, "rsa-1", "ES256"),
    "a wrong issuer": lambda: signed(RSA_KEY, "rsa-1", "RS256", iss="https://evil.test/"),
    "a wrong audience": lambda: signed(RSA_KEY, "rsa-1", "RS256", aud="someone-else"),
    "expired": lambda: signed(RSA_KEY, "rsa-1", "RS256", exp=int(time.time()) - 120),
    "not valid yet": lambda: signed(RSA_KEY, "rsa-1", "RS256", nbf=int(time.time()) + 120),
    "no expiry": lambda: signed(RSA_KEY, "rsa-1", "RS256", exp=None),
    "no subject": lambda: signed(RSA_KEY, "rsa-1", "RS256", sub=None),
    "no kid with two keys listed": lambda: signed(RSA_KEY, None, "RS256"),
    "not a JWT": lambda: "abc.def.ghi",
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_tokens_that_prove_nothing_get_401(case: str, http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/releases", headers=bearer(REFUSED[case]()))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["type"] == "urn:provisioner:problem:unauthorized"


async def test_scopes_come_from_the_scope_claim(http: httpx.AsyncClient, unit_id: str) -> None:
    reader = signed(RSA_KEY, "rsa-1", "RS256", scope="openid read")
    document = unit(unit_id, [component(f"{unit_id}:a")])
    refused = await http.post(
        "/v1/deployments", json={"descriptor": document}, headers=bearer(reader)
    )
    assert refused.status_code == 403
    assert refused.json()["requiredScope"] == "deploy:development"
    nothing = signed(RSA_KEY, "rsa-1", "RS256", scope="openid profile")
    assert (await http.get("/v1/releases", headers=bearer(nothing))).json()[
        "requiredScope"
    ] == "read"


async def test_a_groups_claim_is_mapped_to_scopes_by_a_yaml_file(
    issuer: Issuer, tmp_path: Path, mock_adapter: str, unit_id: str
) -> None:
    scope_map = tmp_path / "scopes.yaml"
    scope_map.write_text("platform-team: ['deploy:*']\nanalysts: [read]\n")
    settings = oidc_settings(
        tmp_path, mock_adapter, issuer.url, oidc_scopes_claim="groups", oidc_scope_map=scope_map
    )
    server = ServerThread(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            platform = signed(RSA_KEY, "rsa-1", "RS256", groups=["platform-team"], scope=None)
            analyst = signed(RSA_KEY, "rsa-1", "RS256", groups=["analysts", "x"])
            document = unit(unit_id, [component(f"{unit_id}:a")], environment="production")
            deployed = await client.post(
                "/v1/deployments", json={"descriptor": document}, headers=bearer(platform)
            )
            read = await client.get("/v1/releases", headers=bearer(analyst))
            refused = await client.post(
                "/v1/deployments", json={"descriptor": document}, headers=bearer(analyst)
            )
    finally:
        server.stop()
    assert deployed.status_code == 202, deployed.text
    assert read.status_code == 200
    assert refused.status_code == 403  # its scope claim says deploy:development: not used


async def test_an_unknown_kid_refetches_the_jwks_once_and_is_rate_limited(
    tmp_path: Path, mock_adapter: str
) -> None:
    """Concurrent first requests fetch once; a key added by rotation is fetched on its first
    use; made-up kids after that fetch nothing more (at most one refetch per interval)."""
    jwks = Jwks([jwk(RSA_KEY, "rsa-1")])
    keys = ServerThread(jwks.app()).start()
    settings = oidc_settings(tmp_path, mock_adapter, f"{keys.url}/jwks.json")
    server = ServerThread(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = signed(RSA_KEY, "rsa-1", "RS256")
            answers = await asyncio.gather(
                *(client.get("/v1/releases", headers=bearer(first)) for _ in range(10))
            )
            assert [a.status_code for a in answers] == [200] * 10
            assert jwks.fetches == 1
            jwks.keys.append(jwk(ROTATED_KEY, "ec-2"))  # the issuer rotates
            rotated = signed(ROTATED_KEY, "ec-2", "ES256")
            assert (await client.get("/v1/releases", headers=bearer(rotated))).status_code == 200
            assert jwks.fetches == 2
            for n in range(5):
                made_up = signed(OUTSIDE_KEY, f"made-up-{n}", "RS256")
                response = await client.get("/v1/releases", headers=bearer(made_up))
                assert response.status_code == 401
            assert jwks.fetches == 2
            assert (await client.get("/v1/releases", headers=bearer(first))).status_code == 200
    finally:
        server.stop()
        keys.stop()
