"""Typed settings, read once from the environment (prefix ``PROVISIONER_``) at the edge."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioner.auth.exposure import is_loopback_url

MiB = 1024 * 1024
C = TypeVar("C")


def default_replica_id() -> str:
    """The host name plus this process's id and a random part: unique per process.

    Two processes on one host must never share an id, since a process takes the operations of
    its own id for a dead predecessor's (measured with the bare host name: two processes stole
    each other's work, 2,604 takeovers for 100 components)."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"


class Settings(BaseSettings):
    """Everything the service can be told; see the README's Configuration section."""

    model_config = SettingsConfigDict(env_prefix="PROVISIONER_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./provisioner.db"
    # PostgreSQL connections per replica: the write pool (and as many again in overflow) and
    # the read pool (likewise), apart so that status reads never queue behind writes.
    database_pool_size: int = Field(default=10, ge=1)
    database_read_pool_size: int = Field(default=5, ge=1)
    config: Path | None = Field(
        default=None, description="YAML file with the Tech Adapter registry"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)

    max_body_bytes: int = Field(default=5 * MiB, ge=1024)
    max_answer_bytes: int = Field(
        default=16 * MiB, ge=64 * 1024, description="largest Tech Adapter answer body read"
    )
    max_concurrency: int = Field(default=64, ge=1, description="adapter calls in flight")
    max_running_operations: int = Field(default=32, ge=1, description="per replica")
    max_loop_lag_seconds: float = Field(
        default=0.005, gt=0, description="busier than this, a replica takes no more work"
    )

    replica_id: str = Field(default_factory=default_replica_id, min_length=1, max_length=100)
    # A dead replica's operations are taken over at most lease + claim interval after its
    # last heartbeat: 21 s by default.
    lease_seconds: float = Field(default=20.0, gt=0)
    claim_interval_seconds: float = Field(default=1.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    adapter_timeout_seconds: float = Field(default=1800.0, gt=0)
    operation_timeout_seconds: float | None = Field(default=None, gt=0)
    poll_initial_seconds: float = Field(default=0.1, gt=0)
    poll_max_seconds: float = Field(default=10.0, gt=0)
    poll_multiplier: float = Field(default=1.5, ge=1.0)
    retry_attempts: int = Field(default=5, ge=1, description="per adapter request")
    retry_max_seconds: float = Field(default=30.0, gt=0)
    poll_error_budget: int = Field(default=10, ge=1)
    adapter_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    poll_timeout_seconds: float = Field(default=30.0, gt=0, description="one status poll")

    # --- Market Plane publication (the registry's ``marketplaces``) ---
    # Past it, a release whose event a Market Plane has not acknowledged is CORRUPT.
    publication_timeout_seconds: float = Field(default=600.0, gt=0)
    publication_request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="one delivery, connecting included"
    )
    publication_retry_initial_seconds: float = Field(default=1.0, gt=0)
    publication_retry_max_seconds: float = Field(default=60.0, gt=0)

    # --- governance: validation and policies before operations -----------------------------
    validate_before_deploy: bool = Field(
        default=True, description="each component's adapter validates it before a deploy"
    )
    policies: Path | None = Field(
        default=None, description="a directory of Rego policies (.rego) checked on every request"
    )
    share_private_info: bool = Field(
        default=False,
        description="send every adapter every component's privateInfo (the Tech Adapter API's "
        "behaviour); by default an adapter gets only its own components' and the direct "
        "dependencies' of the component it provisions",
    )

    failpoints: str | None = Field(
        default=None,
        description="testing aid: crash points such as 'after-call=<component id>'",
    )

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Observability: live event streams and metrics.
    max_event_streams: int = Field(
        default=100, ge=1, description="event streams (text/event-stream) open per replica"
    )
    event_stream_ping_seconds: float = Field(
        default=15.0, gt=0, description="keep-alive comment interval on an idle event stream"
    )
    event_stream_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description="how often a stream looks for new events without notifications (SQLite, "
        "or PostgreSQL while the listening connection is down)",
    )
    metrics_refresh_seconds: float = Field(
        default=15.0, gt=0, description="how often the database-wide gauges are read"
    )

    # --- retention (README "Retention") ------------------------------------------------
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="finished operations that ended longer ago than this are purged "
        "(default: kept forever)",
    )
    retention_batch_size: int = Field(
        default=500, ge=1, le=5000, description="operations purged per transaction"
    )
    retention_pause_seconds: float = Field(
        default=0.1, ge=0, description="pause between two batches of a purge"
    )
    retention_interval_seconds: float = Field(
        default=3600.0, gt=0, description="how often a replica purges"
    )

    # --- authentication and authorisation (README "Security") ---------------------------
    # "off" is accepted only when the service listens on a loopback address.
    auth: Literal["on", "off"] = "on"
    # OIDC: all three, or none (API tokens only).
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_scopes_claim: str = Field(
        default="scope", min_length=1, description="the claim whose values are the scopes"
    )
    oidc_scope_map: Path | None = Field(
        default=None, description="YAML mapping claim values (groups) to lists of scopes"
    )
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    oidc_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # An unknown kid refetches the JWKS at most this often (a flood of made-up kids costs the
    # identity provider one request per interval).
    oidc_jwks_refetch_seconds: float = Field(default=30.0, ge=0)
    metrics_auth: Literal["open", "token"] = "token"

    @property
    def replica_id_is_explicit(self) -> bool:
        """Whether the replica id was given (PROVISIONER_REPLICA_ID) rather than generated."""
        return "replica_id" in self.model_fields_set

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    def configure(self, cls: type[C], **overrides: Any) -> C:
        """A ``cls`` dataclass whose fields named like settings take their values."""
        names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
        known = {name: getattr(self, name) for name in names if name in type(self).model_fields}
        return cls(**(known | overrides))

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if not self.database_url.startswith(
            ("sqlite+aiosqlite:", "postgresql+asyncpg:", "postgresql+psycopg:")
        ):
            raise ValueError(
                "database_url must use sqlite+aiosqlite, postgresql+asyncpg or postgresql+psycopg"
            )
        if self.poll_max_seconds < self.poll_initial_seconds:
            raise ValueError("poll_max_seconds must be at least poll_initial_seconds")
        if self.publication_retry_max_seconds < self.publication_retry_initial_seconds:
            raise ValueError(
                "publication_retry_max_seconds must be at least publication_retry_initial_seconds"
            )
        if self.lease_seconds < 1.0:
            raise ValueError("lease_seconds below 1 s leaves no room for a heartbeat")
        return self

    @model_validator(mode="after")
    def _coherent_auth(self) -> Settings:
        oidc = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(oidc) and not all(oidc):
            raise ValueError(
                "oidc_issuer, oidc_audience and oidc_jwks_url are set together, or not at all"
            )
        if self.oidc_jwks_url is not None and not _safe_jwks_url(self.oidc_jwks_url):
            raise ValueError("oidc_jwks_url must be https (http only on a loopback address)")
        return self


def _safe_jwks_url(url: str) -> bool:
    # Signing keys fetched in clear text could be swapped on the way.
    return url.startswith("https://") or is_loopback_url(url)
