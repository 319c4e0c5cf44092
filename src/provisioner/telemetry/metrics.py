"""The service's Prometheus metrics, in a registry of its own (one per app, so that several apps
in one process, as in tests, never share or clash).

``Metrics`` is what the rest of the service reports to: the engine (``EngineObserver``), the
adapter client (``ExchangeObserver``), the Market Plane publisher (``publication_delivered``,
``publication_failed``), the service's commands and policies (``policy_denied``) and the HTTP
middleware. Gauges of what the database holds are set by a
periodic task (``set_activity``); those of what this replica holds now (calls in flight, open
streams) are read when scraped (``live``). Every label value is bounded: statuses, types and
actions are enums, ``adapter`` is a registered template id, ``route`` a route's template, never
a unit, component or operation id. The README lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from provisioner.domain.status import OperationStatus, ReleaseStatus, TaskAction, TaskStatus
from provisioner.engine.ports import AdapterEndpoint, AdapterErrorKind, OperationHeader
from provisioner.telemetry.health import AdapterHealth

if TYPE_CHECKING:
    from provisioner.store.activity import Activity

PREFIX = "provisioner_"
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_POLICY_LABELS = 100  # distinct policy names kept as label values; then "other"

LiveRead = Callable[[], Iterable[tuple[tuple[str, ...], float]]]
M = TypeVar("M", Counter, Gauge, Histogram)


class Metrics:
    """Every metric of one running service, and the observer methods that move them."""

    def __init__(self, *, replica_id: str, version: str) -> None:
        self.registry = CollectorRegistry()
        self.health = AdapterHealth()
        self._children: dict[tuple[object, ...], object] = {}
        self._policies: set[str] = set()
        self._live = _LiveGauges()
        self.registry.register(self._live)
        self._define(replica_id, version)

    def _define(self, replica_id: str, version: str) -> None:
        registry = self.registry

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, text, labels, registry=registry)

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, text, labels, registry=registry)

        def histogram(
            name: str, text: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(PREFIX + name, text, labels, buckets=buckets, registry=registry)

        info = gauge("build_info", "Always 1: this replica and its version", ("replica", "version"))
        info.labels(replica_id, version).set(1)
        self.submitted = counter("operations_submitted", "Operations submitted", ("type",))
        self.started = counter(
            "operations_started", "Operations claimed for the first time", ("type",)
        )
        self.finished = counter(
            "operations_finished", "Operations ended, by final status", ("type", "status")
        )
        self.takeovers = counter(
            "lease_takeovers",
            "Operations claimed after another owner (lease lapsed or handed back)",
        )
        self.fenced = counter(
            "fenced_writes_refused", "Writes and lease renewals refused by the fencing token"
        )
        self.operations = gauge(
            "operations", "Operations pending and running, in the whole database", ("status",)
        )
        self.oldest = gauge(
            "operation_oldest_age_seconds",
            "Age of the oldest pending (since created) or running (since started) operation",
            ("status",),
        )
        self.releases = gauge("releases", "Releases per status, in the whole database", ("status",))
        self.task_seconds = histogram(
            "task_duration_seconds",
            "A task's adapter call, POST and polling",
            ("adapter", "action", "status"),
            TASK_BUCKETS,
        )
        self.adapter_requests = counter(
            "adapter_requests", "HTTP requests sent to Tech Adapters", ("adapter",)
        )
        self.adapter_errors = counter(
            "adapter_errors", "Failed Tech Adapter calls", ("adapter", "kind", "status_code")
        )
        self.adapter_seconds = histogram(
            "adapter_request_duration_seconds",
            "Tech Adapter HTTP requests answered, until the whole answer was read",
            ("adapter",),
            REQUEST_BUCKETS,
        )
        self.deliveries = counter(
            "marketplace_deliveries", "Market Plane deliveries", ("outcome", "reason")
        )
        self.denials = counter("policy_denials", "Requests denied by a policy", ("policy",))
        self.http_requests = counter(
            "http_requests", "HTTP requests answered", ("method", "route", "status")
        )
        self.http_seconds = histogram(
            "http_request_duration_seconds",
            "Time to the start of the answer (a stream: to its opening)",
            ("method", "route"),
            HTTP_BUCKETS,
        )

    def _child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, looked up once per label set (the hot path's cost)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child  # type: ignore[return-value]

    # --- scrape -------------------------------------------------------------------------------

    def live(self, name: str, text: str, labels: tuple[str, ...], read: LiveRead) -> None:
        """A gauge read when scraped: ``read()`` gives (label values, value) pairs."""
        self._live.add(PREFIX + name, text, labels, read)

    def watch_adapters(
        self,
        templates: Mapping[str, str],
        usage: Callable[[], Mapping[str, tuple[int, int]]],
    ) -> None:
        """Calls in flight and waiting for a slot, per adapter: ``usage()`` is the engine's,
        per endpoint key; ``templates`` maps each registered key to its template id."""

        def per_template(position: int) -> Iterator[tuple[tuple[str, ...], float]]:
            totals = dict.fromkeys(templates.values(), 0)
            for key, counts in usage().items():
                template = templates.get(key)
                if template is not None:
                    totals[template] += counts[position]
            return (((template,), float(total)) for template, total in totals.items())

        self.live(
            "adapter_calls_in_flight",
            "Adapter operations in progress (holding a slot, polling included), this replica",
            ("adapter",),
            lambda: per_template(0),
        )
        self.live(
            "adapter_calls_waiting",
            "Adapter operations waiting for a slot (global or per-adapter limit), this replica",
            ("adapter",),
            lambda: per_template(1),
        )

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scraper's ``Accept`` header: (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # --- operations (engine and service) ------------------------------------------------------

    def operation_submitted(self, header: OperationHeader) -> None:
        self._child(self.submitted, header.type).inc()

    def operation_started(self, header: OperationHeader, *, resumed: bool) -> None:
        if resumed:
            self.takeovers.inc()
        else:
            self._child(self.started, header.type).inc()

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        self._child(self.finished, header.type, status).inc()

    def fenced_writes_refused(self, count: int) -> None:
        self.fenced.inc(count)

    def task_finished(
        self, endpoint: AdapterEndpoint, action: TaskAction, status: TaskStatus, seconds: float
    ) -> None:
        child = self._child(self.task_seconds, endpoint.infrastructure_template_id, action, status)
        child.observe(seconds)

    def set_activity(self, activity: Activity, *, now: float | None = None) -> None:
        """The database's counts, as last read."""
        now = time.time() if now is None else now
        for status, active in activity.operations.items():
            self.operations.labels(status).set(active.count)
            since = active.oldest_since
            self.oldest.labels(status).set(0 if since is None else max(0, now - since.timestamp()))
        for release_status in ReleaseStatus:  # a status no release has any more reads 0
            self.releases.labels(release_status).set(activity.releases.get(release_status, 0))

    # --- Tech Adapter calls (adapter client, engine) ------------------------------------------

    def exchange_started(self, endpoint: AdapterEndpoint) -> None:
        self._child(self.adapter_requests, endpoint.infrastructure_template_id).inc()
        self.health.started(endpoint)

    def exchange_ended(
        self,
        endpoint: AdapterEndpoint,
        *,
        seconds: float,
        status_code: int | None,
        error: AdapterErrorKind | None,
        cause: str | None = None,
    ) -> None:
        adapter = endpoint.infrastructure_template_id
        if status_code is not None:
            self._child(self.adapter_seconds, adapter).observe(seconds)
        if error is not None:
            code = str(status_code) if error == "http" and status_code is not None else ""
            self._child(self.adapter_errors, adapter, error, code).inc()
        self.health.ended(
            endpoint, seconds=seconds, status_code=status_code, error=error, cause=cause
        )

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        code = str(status_code) if kind == "http" and status_code is not None else ""
        self._child(self.adapter_errors, endpoint.infrastructure_template_id, kind, code).inc()
        self.health.failed(endpoint, kind, status_code)

    # --- features that report their own events ------------------------------------------------

    def publication_delivered(self) -> None:
        """A release publication reached the Market Plane."""
        self._child(self.deliveries, "delivered", "").inc()

    def publication_failed(self, reason: AdapterErrorKind) -> None:
        """A delivery attempt to the Market Plane failed (it will be tried again or given up):
        an error answer, no answer in time, no connection, or an unusable answer."""
        self._child(self.deliveries, "failed", reason).inc()

    def policy_denied(self, policy: str) -> None:
        """A policy (its Rego package name) denied a request."""
        if policy not in self._policies:
            if len(self._policies) >= MAX_POLICY_LABELS:
                policy = "other"
            else:
                self._policies.add(policy)
        self._child(self.denials, policy).inc()

    # --- HTTP ---------------------------------------------------------------------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered; ``route`` is its route's template (or ``<unmatched>``)."""
        method = method if method in HTTP_METHODS else "other"
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_seconds, method, route).observe(seconds)


class _LiveGauges(Collector):
    """Gauges whose values are read from the running service when scraped."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, tuple[str, ...], LiveRead]] = {}

    def add(self, name: str, text: str, labels: tuple[str, ...], read: LiveRead) -> None:
        """Add a gauge, or give a new source to one of that name (a service started again)."""
        self._gauges[name] = (text, labels, read)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (text, labels, read) in list(self._gauges.items()):
            family = GaugeMetricFamily(name, text, labels=list(labels))
            for values, value in read():
                family.add_metric(list(values), value)
            yield family
