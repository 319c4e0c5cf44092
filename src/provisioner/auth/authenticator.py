"""The one entry point of authentication: a bearer credential in, a principal out."""

from __future__ import annotations

import httpx
import structlog

from provisioner.auth.oidc import JwksCache, OidcPolicy, OidcVerifier, load_scope_map
from provisioner.auth.scopes import Principal
from provisioner.auth.tokens import TokenVerifier
from provisioner.errors import AuthenticationError
from provisioner.settings import Settings
from provisioner.store.database import Database

log = structlog.get_logger(__name__)


class Authenticator:
    """Checks bearer credentials: API tokens always, JWTs when an OIDC issuer is set.

    With authentication off every request is the anonymous principal, which may do
    everything (allowed only on loopback: ``auth.exposure``)."""

    def __init__(
        self,
        *,
        enabled: bool,
        tokens: TokenVerifier,
        oidc: OidcVerifier | None = None,
        metrics_open: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.enabled = enabled
        self.metrics_open = metrics_open or not enabled
        self._tokens = tokens
        self._oidc = oidc
        self._http = http

    async def authenticate(self, credential: str | None) -> Principal:
        """The principal a bearer credential proves (``AuthenticationError`` otherwise)."""
        if not self.enabled:
            return Principal.anonymous()
        if not credential:
            raise AuthenticationError("a bearer token is required", missing=True)
        try:
            if TokenVerifier.recognises(credential):
                return await self._tokens.verify(credential)
            if OidcVerifier.recognises(credential):
                if self._oidc is None:
                    raise AuthenticationError("JWTs are not accepted: no OIDC issuer is set")
                return await self._oidc.verify(credential)
            raise AuthenticationError("the bearer token is neither an API token nor a JWT")
        except AuthenticationError as exc:
            # Why, never what: the credential itself is not logged.
            log.info("authentication_failed", reason=exc.message)
            raise

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def build_authenticator(settings: Settings, database: Database) -> Authenticator:
    """The authenticator ``settings`` describe (the scope map is read now: a bad one stops
    the service at start)."""
    tokens = TokenVerifier(database)
    if not settings.oidc_enabled:
        return Authenticator(
            enabled=settings.auth == "on",
            tokens=tokens,
            metrics_open=settings.metrics_auth == "open",
        )
    assert settings.oidc_issuer is not None
    assert settings.oidc_audience is not None
    assert settings.oidc_jwks_url is not None
    policy = OidcPolicy(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        jwks_url=settings.oidc_jwks_url,
        scopes_claim=settings.oidc_scopes_claim,
        scope_map=load_scope_map(settings.oidc_scope_map) if settings.oidc_scope_map else None,
        leeway_seconds=settings.oidc_leeway_seconds,
        jwks_cache_seconds=settings.oidc_jwks_cache_seconds,
        jwks_refetch_seconds=settings.oidc_jwks_refetch_seconds,
    )
    http = httpx.AsyncClient(headers={"accept": "application/json"})
    keys = JwksCache(
        http,
        policy.jwks_url,
        cache_seconds=policy.jwks_cache_seconds,
        refetch_seconds=policy.jwks_refetch_seconds,
    )
    return Authenticator(
        enabled=settings.auth == "on",
        tokens=tokens,
        oidc=OidcVerifier(policy, keys),
        metrics_open=settings.metrics_auth == "open",
        http=http,
    )
