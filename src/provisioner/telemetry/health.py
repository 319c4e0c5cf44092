"""Each Tech Adapter's health as this replica sees it, kept in memory from its own calls.

Per adapter endpoint (a template at one URL): requests in flight, when the last usable answer
came and the last failure (its kind, status code and cause), and the latency of the last
``SAMPLES`` answered requests. Another replica has seen other calls: the figures are this
replica's, since it started.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from provisioner.engine.ports import AdapterEndpoint, AdapterErrorKind

SAMPLES = 256  # latencies kept per adapter for the percentiles


@dataclass(frozen=True, slots=True)
class LastError:
    kind: AdapterErrorKind
    status_code: int | None
    cause: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of the recent answered requests, in seconds (None without samples)."""

    samples: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class AdapterReport:
    """One registered adapter in one environment (None: every environment without a URL of
    its own), with its health."""

    environment: str | None
    infrastructure_template_id: str
    url: str  # without credentials
    timeout_seconds: float
    max_concurrency: int | None
    requests: int
    errors: int
    requests_in_flight: int
    calls_in_flight: int
    calls_waiting: int
    last_success_at: datetime | None
    last_error: LastError | None
    latency: Latency


@dataclass(slots=True)
class _Seen:
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    last_success: float | None = None
    last_error: tuple[AdapterErrorKind, int | None, str | None, float] | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))


class AdapterHealth:
    """Fed by the adapter client's exchanges; read by ``GET /v1/tech-adapters``."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def _of(self, endpoint: AdapterEndpoint) -> _Seen:
        seen = self._seen.get(endpoint.key)
        if seen is None:
            seen = self._seen[endpoint.key] = _Seen()
        return seen

    def started(self, endpoint: AdapterEndpoint) -> None:
        seen = self._of(endpoint)
        seen.requests += 1
        seen.in_flight += 1

    def ended(
        self,
        endpoint: AdapterEndpoint,
        *,
        seconds: float,
        status_code: int | None,
        error: AdapterErrorKind | None,
        cause: str | None,
    ) -> None:
        seen = self._of(endpoint)
        seen.in_flight -= 1
        if status_code is not None:
            seen.latencies.append(seconds)
        if error is not None:
            self.failed(endpoint, error, status_code, cause)
        elif status_code is not None:
            seen.last_success = time.time()

    def failed(
        self,
        endpoint: AdapterEndpoint,
        kind: AdapterErrorKind,
        status_code: int | None = None,
        cause: str | None = None,
    ) -> None:
        seen = self._of(endpoint)
        seen.errors += 1
        seen.last_error = (kind, status_code, cause, time.time())

    def report(
        self,
        endpoints: Iterable[tuple[str | None, AdapterEndpoint]],
        usage: Mapping[str, tuple[int, int]],
    ) -> list[AdapterReport]:
        """The registered ``endpoints`` with what was seen of each; ``usage`` is the engine's
        slots per endpoint key (calls in flight, calls waiting)."""
        return [self._report(environment, endpoint, usage) for environment, endpoint in endpoints]

    def _report(
        self,
        environment: str | None,
        endpoint: AdapterEndpoint,
        usage: Mapping[str, tuple[int, int]],
    ) -> AdapterReport:
        seen = self._seen.get(endpoint.key) or _Seen()
        in_flight, waiting = usage.get(endpoint.key, (0, 0))
        last_error = None
        if seen.last_error is not None:
            kind, code, cause, at = seen.last_error
            last_error = LastError(kind, code, cause, _utc(at))
        return AdapterReport(
            environment=environment,
            infrastructure_template_id=endpoint.infrastructure_template_id,
            url=without_credentials(endpoint.url),
            timeout_seconds=endpoint.timeout_seconds,
            max_concurrency=endpoint.max_concurrency,
            requests=seen.requests,
            errors=seen.errors,
            requests_in_flight=seen.in_flight,
            calls_in_flight=in_flight,
            calls_waiting=waiting,
            last_success_at=_utc(seen.last_success) if seen.last_success else None,
            last_error=last_error,
            latency=latency(list(seen.latencies)),
        )


def latency(samples: Sequence[float]) -> Latency:
    """Nearest-rank percentiles of ``samples``."""
    if not samples:
        return Latency(0)
    ordered = sorted(samples)

    def rank(share: float) -> float:
        return ordered[max(0, math.ceil(share * len(ordered)) - 1)]

    return Latency(len(ordered), rank(0.5), rank(0.9), rank(0.99))


def without_credentials(url: str) -> str:
    """``url`` without a user name or password (a registry URL may carry them)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
