"""The metrics module on its own: one registry per instance, bounded labels, the one-line
calls other features make, the gauges read when scraped, adapter health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from provisioner.domain.status import OperationStatus, OperationType, ReleaseStatus
from provisioner.engine.ports import AdapterEndpoint, OperationHeader
from provisioner.store.activity import ActiveOperations, Activity
from provisioner.telemetry.health import AdapterHealth, latency, without_credentials
from provisioner.telemetry.metrics import MAX_POLICY_LABELS, Metrics
from tests.streams import value
from tests.unit.fakes import T0

ENDPOINT = AdapterEndpoint("urn:t:itm:a:0", "http://a:1", 60.0)
HEADER = OperationHeader("op", OperationType.DEPLOY, "urn:u", "dev", "1", False, T0)


def exposition(metrics: Metrics) -> str:
    body, content_type = metrics.render("text/plain")
    assert content_type.startswith("text/plain")
    return body.decode()


def test_two_instances_count_apart() -> None:
    """Several apps in one process (tests) each have their own registry."""
    one, other = Metrics(replica_id="a", version="1"), Metrics(replica_id="b", version="1")
    one.operation_submitted(HEADER)
    assert value(exposition(one), "provisioner_operations_submitted_total", type="DEPLOY") == 1
    assert value(exposition(other), "provisioner_operations_submitted_total", type="DEPLOY") == 0
    assert value(exposition(other), "provisioner_build_info", replica="b", version="1") == 1


def test_market_plane_deliveries_and_policy_denials_are_one_call_each() -> None:
    metrics = Metrics(replica_id="a", version="1")
    metrics.publication_delivered()
    metrics.publication_delivered()
    metrics.publication_failed("timeout")
    metrics.policy_denied("provisioner.safety")
    text = exposition(metrics)
    name = "provisioner_marketplace_deliveries_total"
    assert value(text, name, outcome="delivered", reason="") == 2
    assert value(text, name, outcome="failed", reason="timeout") == 1
    assert value(text, "provisioner_policy_denials_total", policy="provisioner.safety") == 1


def test_policy_names_past_the_bound_share_one_label() -> None:
    metrics = Metrics(replica_id="a", version="1")
    for n in range(MAX_POLICY_LABELS + 5):
        metrics.policy_denied(f"provisioner.p{n}")
    text = exposition(metrics)
    assert value(text, "provisioner_policy_denials_total", policy="other") == 5
    assert text.count("provisioner_policy_denials_total{") == MAX_POLICY_LABELS + 1


def test_http_methods_outside_the_known_ones_share_one_label() -> None:
    metrics = Metrics(replica_id="a", version="1")
    metrics.http_request("BREW", "<unmatched>", 405, 0.001)
    text = exposition(metrics)
    labels = {"method": "other", "route": "<unmatched>", "status": "405"}
    assert value(text, "provisioner_http_requests_total", **labels) == 1


def test_database_gauges_follow_the_last_reading() -> None:
    """A release status that no release has any more reads 0, not its last count."""
    metrics = Metrics(replica_id="a", version="1")
    started = datetime(2026, 1, 1, tzinfo=UTC)
    now = (started + timedelta(seconds=90)).timestamp()
    metrics.set_activity(
        Activity(
            operations={
                OperationStatus.PENDING: ActiveOperations(),
                OperationStatus.RUNNING: ActiveOperations(2, started),
            },
            releases={ReleaseStatus.CORRUPT: 1, ReleaseStatus.DEPLOYED: 4},
        ),
        now=now,
    )
    text = exposition(metrics)
    assert value(text, "provisioner_operations", status="RUNNING") == 2
    assert value(text, "provisioner_operation_oldest_age_seconds", status="RUNNING") == 90
    assert value(text, "provisioner_operation_oldest_age_seconds", status="PENDING") == 0
    assert value(text, "provisioner_releases", status="CORRUPT") == 1
    metrics.set_activity(Activity(releases={ReleaseStatus.DEPLOYED: 5}), now=now)
    text = exposition(metrics)
    assert value(text, "provisioner_releases", status="CORRUPT") == 0
    assert value(text, "provisioner_releases", status="DEPLOYED") == 5


def test_calls_in_flight_and_waiting_are_summed_per_adapter_when_scraped() -> None:
    metrics = Metrics(replica_id="a", version="1")
    usage = {"k1": (2, 1), "k2": (1, 0), "unregistered": (9, 9)}
    metrics.watch_adapters({"k1": "urn:t:a", "k2": "urn:t:a", "k3": "urn:t:b"}, lambda: usage)
    text = exposition(metrics)
    assert value(text, "provisioner_adapter_calls_in_flight", adapter="urn:t:a") == 3
    assert value(text, "provisioner_adapter_calls_waiting", adapter="urn:t:a") == 1
    assert value(text, "provisioner_adapter_calls_in_flight", adapter="urn:t:b") == 0
    usage["k1"] = (0, 0)
    assert value(exposition(metrics), "provisioner_adapter_calls_in_flight", adapter="urn:t:a") == 1


def test_a_scraper_asking_for_openmetrics_gets_it() -> None:
    metrics = Metrics(replica_id="a", version="1")
    metrics.operation_finished(HEADER, OperationStatus.SUCCEEDED)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    (sample,) = [
        s for s in families["provisioner_operations_finished"].samples if s.name.endswith("_total")
    ]
    assert sample.labels == {"type": "DEPLOY", "status": "SUCCEEDED"}


def test_adapter_errors_keep_their_status_code_only_for_http() -> None:
    metrics = Metrics(replica_id="a", version="1")
    metrics.exchange_started(ENDPOINT)
    metrics.exchange_ended(ENDPOINT, seconds=0.2, status_code=503, error="http")
    metrics.exchange_started(ENDPOINT)
    metrics.exchange_ended(ENDPOINT, seconds=0.1, status_code=None, error="connection")
    metrics.adapter_error(ENDPOINT, "timeout")
    text = exposition(metrics)
    name = "provisioner_adapter_errors_total"
    assert (
        value(
            text, name, adapter=ENDPOINT.infrastructure_template_id, kind="http", status_code="503"
        )
        == 1
    )
    assert (
        value(
            text,
            name,
            adapter=ENDPOINT.infrastructure_template_id,
            kind="connection",
            status_code="",
        )
        == 1
    )
    assert (
        value(
            text, name, adapter=ENDPOINT.infrastructure_template_id, kind="timeout", status_code=""
        )
        == 1
    )
    # Only answered requests have a latency.
    assert (
        value(
            text,
            "provisioner_adapter_request_duration_seconds_count",
            adapter=ENDPOINT.infrastructure_template_id,
        )
        == 1
    )


def test_health_remembers_the_last_success_the_last_error_and_recent_latency() -> None:
    health = AdapterHealth()
    for seconds in (0.1, 0.2, 0.3, 0.4):
        health.started(ENDPOINT)
        health.ended(ENDPOINT, seconds=seconds, status_code=200, error=None, cause=None)
    health.started(ENDPOINT)
    health.ended(ENDPOINT, seconds=5.0, status_code=None, error="timeout", cause="ReadTimeout")
    (report,) = health.report([("production", ENDPOINT)], {ENDPOINT.key: (3, 1)})
    assert report.environment == "production"
    assert (report.requests, report.errors, report.requests_in_flight) == (5, 1, 0)
    assert (report.calls_in_flight, report.calls_waiting) == (3, 1)
    assert report.last_success_at is not None
    assert report.last_error is not None
    assert (report.last_error.kind, report.last_error.cause) == ("timeout", "ReadTimeout")
    assert report.last_error.at >= report.last_success_at
    assert (report.latency.samples, report.latency.p50, report.latency.p99) == (4, 0.2, 0.4)


def test_latency_percentiles_are_nearest_rank() -> None:
    assert latency([]).p50 is None
    figures = latency([float(n) for n in range(1, 101)])
    assert (figures.p50, figures.p90, figures.p99) == (50.0, 90.0, 99.0)


def test_adapter_urls_are_shown_without_credentials() -> None:
    assert without_credentials("https://u:p@host:8443/base") == "https://host:8443/base"
    assert without_credentials("http://host:1") == "http://host:1"


def test_claims_count_as_starts_or_takeovers_and_refused_writes_are_counted() -> None:
    metrics = Metrics(replica_id="a", version="1")
    metrics.operation_started(HEADER, resumed=False)
    metrics.operation_started(HEADER, resumed=True)
    metrics.fenced_writes_refused(3)
    text = exposition(metrics)
    assert value(text, "provisioner_operations_started_total", type="DEPLOY") == 1
    assert value(text, "provisioner_lease_takeovers_total") == 1
    assert value(text, "provisioner_fenced_writes_refused_total") == 3
