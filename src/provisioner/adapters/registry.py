"""The Tech Adapter registry: which adapter serves each ``infrastructureTemplateId``.

Read from the YAML file named by ``PROVISIONER_CONFIG``::

    techAdapters:
      - infrastructureTemplateId: urn:dmb:itm:snowflake-outputport-provisioner:0
        url: http://snowflake-ta:8093          # every environment
        environments:                           # optional per-environment URLs
          production: http://snowflake-ta.prod:8093
        timeoutSeconds: 1800                    # optional: one adapter operation, polling included
        maxConcurrency: 8                       # optional: calls in flight to this adapter
        headers: {Authorization: "Bearer ${SNOWFLAKE_TA_TOKEN}"}   # optional, ${VAR} from env
        asyncValidation: false                  # optional: validate with /v2/validate (polled)
        validateBeforeDeploy: true              # optional: false skips validation before deploys
    marketplaces:                               # optional: Market Planes told of each release
      - name: catalog
        url: https://catalog.example.com/provisioner/events
        headers: {Authorization: "Bearer ${CATALOG_TOKEN}"}          # optional
        secret: ${CATALOG_SIGNING_SECRET}       # optional: signs every body (HMAC-SHA256)

``${VAR}`` (or ``${VAR:-default}``) in any value is replaced from the environment; an unset
variable without a default is a configuration error. Adapter URLs come only from here, never
from a descriptor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from provisioner.engine.ports import AdapterEndpoint, MarketplaceEndpoint
from provisioner.errors import ConfigurationError

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _AdapterEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    infrastructure_template_id: str = Field(alias="infrastructureTemplateId", min_length=1)
    url: str | None = None
    environments: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(default=None, alias="timeoutSeconds", gt=0)
    max_concurrency: int | None = Field(default=None, alias="maxConcurrency", ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    async_validation: bool = Field(default=False, alias="asyncValidation")
    validate_before_deploy: bool = Field(default=True, alias="validateBeforeDeploy")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("environments")
    @classmethod
    def _http_urls(cls, value: dict[str, str]) -> dict[str, str]:
        return {environment: _check_url(url) for environment, url in value.items()}

    @model_validator(mode="after")
    def _somewhere(self) -> _AdapterEntry:
        if self.url is None and not self.environments:
            raise ValueError("needs a url, or environments with a url each")
        return self


class _MarketplaceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/]+$")
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(default=None, min_length=1, repr=False)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value)


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tech_adapters: list[_AdapterEntry] = Field(default_factory=list, alias="techAdapters")
    marketplaces: list[_MarketplaceEntry] = Field(default_factory=list)

    @field_validator("marketplaces")
    @classmethod
    def _distinct_names(cls, value: list[_MarketplaceEntry]) -> list[_MarketplaceEntry]:
        names = [entry.name for entry in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"Market Plane names must be distinct: {', '.join(twice)}")
        return value


def _problems(exc: ValidationError) -> str:
    """Each problem with where it is, but not the value given: it may be a header's token or a
    Market Plane's secret, and the message is logged."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'the registry'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def _check_url(value: str) -> str:
    try:
        url = httpx.URL(value)
        url.port  # noqa: B018 - parsing the port is what raises for a bad one
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"{value!r} is not a usable URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


class AdapterRegistry:
    """Resolves an ``infrastructureTemplateId`` and an environment to an adapter endpoint;
    names the Market Planes that are told of every release."""

    def __init__(
        self,
        entries: list[_AdapterEntry],
        *,
        default_timeout_seconds: float,
        marketplaces: list[_MarketplaceEntry] | None = None,
    ) -> None:
        self._entries: dict[str, _AdapterEntry] = {}
        for entry in entries:
            if entry.infrastructure_template_id in self._entries:
                raise ConfigurationError(
                    f"infrastructureTemplateId {entry.infrastructure_template_id!r} "
                    "is registered twice"
                )
            self._entries[entry.infrastructure_template_id] = entry
        self._default_timeout = default_timeout_seconds
        self._cache: dict[tuple[str, str], AdapterEndpoint | None] = {}
        self.marketplaces = tuple(
            MarketplaceEndpoint(
                name=entry.name, url=entry.url, headers=dict(entry.headers), secret=entry.secret
            )
            for entry in marketplaces or ()
        )

    @classmethod
    def empty(cls, *, default_timeout_seconds: float = 1800.0) -> AdapterRegistry:
        return cls([], default_timeout_seconds=default_timeout_seconds)

    @classmethod
    def from_file(
        cls,
        path: Path,
        *,
        default_timeout_seconds: float,
        environ: Mapping[str, str] | None = None,
    ) -> AdapterRegistry:
        """Load the registry; ``${VAR}`` in URLs and header values is taken from ``environ``."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read the adapter registry {path}: {exc}") from exc
        return cls.from_text(
            text, default_timeout_seconds=default_timeout_seconds, environ=environ, source=str(path)
        )

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        default_timeout_seconds: float,
        environ: Mapping[str, str] | None = None,
        source: str = "<config>",
    ) -> AdapterRegistry:
        try:
            data = _expand(yaml.safe_load(text), os.environ if environ is None else environ)
            parsed = _RegistryFile.model_validate(data or {})
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{source}: malformed YAML: {exc}") from exc
        except ValidationError as exc:
            raise ConfigurationError(
                f"{source}: invalid adapter registry: {_problems(exc)}"
            ) from None
        return cls(
            parsed.tech_adapters,
            default_timeout_seconds=default_timeout_seconds,
            marketplaces=parsed.marketplaces,
        )

    @property
    def template_ids(self) -> list[str]:
        return list(self._entries)

    def resolve(self, infrastructure_template_id: str, environment: str) -> AdapterEndpoint | None:
        key = (infrastructure_template_id, environment)
        if key not in self._cache:
            self._cache[key] = self._resolve(*key)
        return self._cache[key]

    def _resolve(self, template_id: str, environment: str) -> AdapterEndpoint | None:
        entry = self._entries.get(template_id)
        if entry is None:
            return None
        url = entry.environments.get(environment, entry.url)
        if url is None:
            return None
        return self._endpoint(entry, url)

    def endpoints(self) -> list[tuple[str | None, AdapterEndpoint]]:
        """Every registered adapter, per environment: ``(environment, endpoint)``, where the
        environment None stands for every environment without a URL of its own."""
        listed: list[tuple[str | None, AdapterEndpoint]] = []
        for entry in self._entries.values():
            if entry.url is not None:
                listed.append((None, self._endpoint(entry, entry.url)))
            listed.extend(
                (environment, self._endpoint(entry, url))
                for environment, url in sorted(entry.environments.items())
            )
        return listed

    def _endpoint(self, entry: _AdapterEntry, url: str) -> AdapterEndpoint:
        return AdapterEndpoint(
            infrastructure_template_id=entry.infrastructure_template_id,
            url=url,
            timeout_seconds=entry.timeout_seconds or self._default_timeout,
            max_concurrency=entry.max_concurrency,
            headers=dict(entry.headers),
            async_validation=entry.async_validation,
            validate_before_deploy=entry.validate_before_deploy,
        )


def _expand(value: object, environ: Mapping[str, str]) -> object:
    """Replace ``${VAR}`` in every string value; unset variables without a default are a
    configuration error that names all of them."""
    missing = sorted(_missing(value, environ))
    if missing:
        raise ConfigurationError(
            "the adapter registry refers to unset environment variables: " + ", ".join(missing)
        )
    return _substitute(value, environ)


def _missing(value: object, environ: Mapping[str, str]) -> set[str]:
    if isinstance(value, str):
        return {
            match.group(1)
            for match in _VARIABLE.finditer(value)
            if match.group(1) not in environ and match.group(2) is None
        }
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_missing(item, environ) for item in value))
    return set()


def _substitute(value: object, environ: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: environ.get(match.group(1), match.group(2)), value)
    if isinstance(value, dict):
        return {key: _substitute(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, environ) for item in value]
    return value
