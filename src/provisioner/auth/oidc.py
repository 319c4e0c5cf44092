"""Bearer JWTs from an OIDC issuer, verified with PyJWT against the issuer's JWKS.

Only RS256 and ES256 are accepted, and only with a key of the configured JWKS whose own
algorithm is the one the token names: ``alg: none``, HMAC (a public key used as a shared
secret), keys embedded in the token (``jwk``, ``jku``, ``x5u``, which are never read) and keys
the JWKS does not list are all refused. ``iss``, ``aud``, ``exp`` and ``sub`` are required;
``exp`` and ``nbf`` are checked with a small leeway for clock skew.

The JWKS is fetched with httpx (PyJWT's own client blocks the event loop), kept for
``jwks_cache_seconds``, and fetched again at once when a token names a kid it does not list
(the issuer rotated its keys), at most once per ``jwks_refetch_seconds``, so that made-up kids
cannot turn the service against the issuer. One fetch runs at a time; requests waiting for it
share its result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import structlog
import yaml

from provisioner.auth.scopes import Principal, PrincipalKind, known_scopes, scope_problem
from provisioner.errors import (
    AuthenticationError,
    ConfigurationError,
    IdentityProviderUnavailableError,
)
from provisioner.store.models import PRINCIPAL

log = structlog.get_logger(__name__)

ALGORITHMS = ("RS256", "ES256")
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 5.0

ScopeMap = Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class OidcPolicy:
    """What a token must be to be accepted, and where its scopes come from."""

    issuer: str
    audience: str
    jwks_url: str
    scopes_claim: str = "scope"
    # Claim values to scopes; None: the claim's values are the scopes.
    scope_map: ScopeMap | None = None
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0
    jwks_refetch_seconds: float = 30.0


def load_scope_map(path: Path) -> dict[str, frozenset[str]]:
    """A YAML mapping of claim values (such as group names) to lists of scopes."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read the scope map {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"the scope map {path} must map claim values to scope lists")
    result: dict[str, frozenset[str]] = {}
    for value, scopes in data.items():
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ConfigurationError(f"scope map {path}: {value!r} must map to a list of scopes")
        problems = [p for p in (scope_problem(s) for s in scopes) if p is not None]
        if problems:
            raise ConfigurationError(f"scope map {path}: {value!r}: {problems[0]}")
        result[str(value)] = frozenset(scopes)
    return result


def scopes_from(claims: Mapping[str, Any], policy: OidcPolicy) -> frozenset[str]:
    """The scopes a token's claims grant: a space-separated string (OAuth 2 ``scope``) or a
    list of strings (``groups``), mapped through the scope map when there is one."""
    value = claims.get(policy.scopes_claim)
    values: Iterable[str] = ()
    if isinstance(value, str):
        values = value.split()
    elif isinstance(value, list):
        values = [item for item in value if isinstance(item, str)]
    if policy.scope_map is None:
        return known_scopes(values)
    return frozenset().union(*(policy.scope_map.get(item, frozenset()) for item in values))


@dataclass(slots=True)
class JwksCache:
    """The issuer's signing keys, fetched when first needed, when stale, and on unknown kids."""

    client: httpx.AsyncClient
    url: str
    cache_seconds: float = 300.0
    refetch_seconds: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    _keys: jwt.PyJWKSet | None = None
    _fetched_at: float = float("-inf")
    _refetched_at: float = float("-inf")
    _failed_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` names (without a kid: the only key), or ``AuthenticationError``."""
        now = self.monotonic()
        if self._keys is not None and now - self._fetched_at <= self.cache_seconds:
            found = self._find(kid)
            if found is not None:
                return found
        async with self._lock:  # one fetch at a time; the others use its result
            return await self._key_locked(kid)

    async def _key_locked(self, kid: str | None) -> jwt.PyJWK:
        now = self.monotonic()
        stale = self._keys is None or now - self._fetched_at > self.cache_seconds
        if stale and now - self._failed_at >= self.refetch_seconds:
            await self._fetch()
        if self._keys is None:
            raise IdentityProviderUnavailableError(
                "the identity provider's signing keys cannot be fetched"
            )
        found = self._find(kid)
        if found is None and self.monotonic() - self._refetched_at >= self.refetch_seconds:
            self._refetched_at = self.monotonic()
            log.info("jwks_refetch", reason="unknown kid")
            await self._fetch()
            found = self._find(kid)
        if found is None:
            raise AuthenticationError("the token is signed by a key the issuer does not list")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        assert self._keys is not None
        if kid is None:
            return self._keys.keys[0] if len(self._keys.keys) == 1 else None
        try:
            return self._keys[kid]
        except KeyError:
            return None

    async def _fetch(self) -> None:
        """Fetch the JWKS; on failure keep the keys already known."""
        try:
            document = await self._download()
            signing = [key for key in document.get("keys", []) if _for_signing(key)]
            self._keys = jwt.PyJWKSet.from_dict({"keys": signing})
        except (httpx.HTTPError, ValueError, jwt.PyJWTError, AttributeError) as exc:
            self._failed_at = self.monotonic()
            log.warning("jwks_fetch_failed", url=self.url, error=f"{type(exc).__name__}: {exc}")
            return
        self._fetched_at = self.monotonic()
        log.info("jwks_fetched", url=self.url, keys=len(self._keys.keys))

    async def _download(self) -> dict[str, Any]:
        async with self.client.stream(
            "GET", self.url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False
        ) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        return document


def _for_signing(key: object) -> bool:
    return isinstance(key, dict) and key.get("use") in (None, "sig")


class OidcVerifier:
    """Turns a bearer JWT into its principal (``sub``), or refuses it."""

    def __init__(self, policy: OidcPolicy, keys: JwksCache) -> None:
        self._policy = policy
        self._keys = keys

    @staticmethod
    def recognises(text: str) -> bool:
        """Whether ``text`` is shaped like a JWS compact serialisation."""
        return text.count(".") == 2

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("the token is not a readable JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise AuthenticationError(
                f"tokens signed with {algorithm!r} are not accepted ({', '.join(ALGORITHMS)})"
            )
        kid = header.get("kid")
        key = await self._keys.key(kid if isinstance(kid, str) else None)
        if key.algorithm_name != algorithm:
            raise AuthenticationError("the token's algorithm is not its key's")
        claims = self._decode(token, key, algorithm)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 0 < len(subject) <= PRINCIPAL:
            raise AuthenticationError(f"the token's sub must be 1 to {PRINCIPAL} characters")
        if not subject.isprintable():
            raise AuthenticationError("the token's sub must be printable")
        return Principal(subject, scopes_from(claims, self._policy), PrincipalKind.JWT)

    def _decode(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                issuer=self._policy.issuer,
                audience=self._policy.audience,
                leeway=self._policy.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("the token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token's issuer is not the one trusted") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("the token is meant for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise AuthenticationError("the token is invalid") from None
        return claims
