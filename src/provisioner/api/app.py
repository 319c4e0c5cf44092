"""The FastAPI application, wired once from ``Settings``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from provisioner import __version__
from provisioner.adapters.client import ClientPolicy, TechAdapterClient
from provisioner.adapters.marketplace import MarketplaceClient
from provisioner.adapters.registry import AdapterRegistry
from provisioner.api.document import complete
from provisioner.api.limits import RequestLimitsMiddleware
from provisioner.api.observability import ObservabilityMiddleware
from provisioner.api.problems import install_problem_handlers
from provisioner.api.routes import router
from provisioner.api.routes.ui import mount_assets
from provisioner.api.schemas import Health
from provisioner.api.security import OPEN_ACCESS
from provisioner.auth.authenticator import Authenticator, build_authenticator
from provisioner.auth.exposure import exposure_problem
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.identity import ReplicaIdentity
from provisioner.engine.publisher import Publisher, PublisherConfig
from provisioner.engine.worker import Worker, WorkerConfig, utc_now
from provisioner.errors import ConfigurationError, DatabaseUnavailableError
from provisioner.policies import PolicyEngine
from provisioner.service import AdapterCalls, Commands, EventStreams, Reads, Services
from provisioner.settings import Settings
from provisioner.store.activity import read_activity
from provisioner.store.database import Database
from provisioner.store.migrate import current_revision, head_revision, migrate
from provisioner.store.notifications import EventWakeups
from provisioner.store.operations import SqlOperationStore
from provisioner.store.publications import SqlPublicationStore
from provisioner.store.queries import Queries
from provisioner.store.replicas import SqlReplicas
from provisioner.store.retention import RetentionPolicy, RetentionTask
from provisioner.store.submissions import Submissions
from provisioner.telemetry.metrics import Metrics
from provisioner.telemetry.refresh import ActivityRefresher

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Runtime:
    """The long-lived parts of a running service."""

    database: Database
    adapters: TechAdapterClient
    worker: Worker
    services: Services
    # Observability: what /metrics and /v1/tech-adapters read, and the tasks behind them.
    replica_id: str
    registry: AdapterRegistry
    metrics: Metrics
    wakeups: EventWakeups
    refresher: ActivityRefresher
    publishing: Publishing | None = None
    identity: ReplicaIdentity | None = None
    authenticator: Authenticator | None = None
    policies: PolicyEngine | None = None
    retention: RetentionTask | None = None


@dataclass(slots=True)
class Publishing:
    """The delivery of release events to the Market Planes, when any is configured."""

    publisher: Publisher
    client: MarketplaceClient

    @classmethod
    def start(
        cls,
        settings: Settings,
        registry: AdapterRegistry,
        database: Database,
        failpoints: Failpoints,
        metrics: Metrics,
    ) -> Publishing | None:
        if not registry.marketplaces:
            return None
        client = MarketplaceClient(
            timeout_seconds=settings.publication_request_timeout_seconds,
            connect_timeout_seconds=settings.adapter_connect_timeout_seconds,
        )
        publisher = Publisher(
            store=SqlPublicationStore(database),
            marketplaces=client,
            endpoints=registry.marketplaces,
            config=settings.configure(PublisherConfig, failpoints=failpoints),
            observer=metrics,
        )
        publisher.start()
        return cls(publisher, client)

    async def stop(self, *, grace_seconds: float) -> None:
        await self.publisher.stop(grace_seconds=grace_seconds)
        await self.client.aclose()


def load_registry(settings: Settings) -> AdapterRegistry:
    if settings.config is None:
        log.warning("no_adapter_registry", hint="set PROVISIONER_CONFIG to a YAML file")
        return AdapterRegistry.empty(default_timeout_seconds=settings.adapter_timeout_seconds)
    return AdapterRegistry.from_file(
        settings.config, default_timeout_seconds=settings.adapter_timeout_seconds
    )


def client_policy(settings: Settings) -> ClientPolicy:
    return settings.configure(
        ClientPolicy,
        connect_timeout_seconds=settings.adapter_connect_timeout_seconds,
        max_connections=settings.max_concurrency,
        max_answer_bytes=settings.max_answer_bytes,
    )


async def start_runtime(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Load the registry and the policies, migrate the database, start the worker."""
    metrics = metrics or Metrics(replica_id=settings.replica_id, version=__version__)
    registry = load_registry(settings)
    # A policy that cannot be used stops the service here, naming its file and line.
    policies = await PolicyEngine.load(settings.policies) if settings.policies else None
    # A write transaction idle for a whole lease belongs to a paused replica, whose leases
    # are lapsing anyway: ending it frees the rows it locked for the replica taking over.
    # Never less than 10 s, so that a short lease cannot cut a slow but live submission.
    database = Database(
        settings.database_url,
        idle_transaction_timeout_seconds=max(settings.lease_seconds, 10.0),
        pool_size=settings.database_pool_size,
        read_pool_size=settings.database_read_pool_size,
    )
    await migrate(database)
    adapters = TechAdapterClient(client_policy(settings), transport=transport, observer=metrics)
    configured = [marketplace.name for marketplace in registry.marketplaces]
    try:
        identity = await hold_replica_id(settings, database)
        dropped = await SqlPublicationStore(database).drop_unconfigured(
            marketplaces=configured, now=utc_now()
        )
    except BaseException:
        await database.dispose()
        raise
    if dropped:
        log.warning("deliveries_dropped", deliveries=dropped, reason="Market Plane not configured")
    failpoints = Failpoints(settings.failpoints)
    publishing = Publishing.start(settings, registry, database, failpoints, metrics)
    worker = Worker(
        store=SqlOperationStore(database, marketplaces=configured),
        adapters=adapters,
        directory=registry,
        config=settings.configure(WorkerConfig, failpoints=failpoints),
        on_finished=publishing.publisher.wake if publishing else None,
        observer=metrics,
    )
    identity.start()
    worker.start()
    queries = Queries(database)
    reads = Reads(queries)
    submissions = Submissions(database)
    wakeups = EventWakeups(database, poll_seconds=settings.event_stream_poll_seconds)
    wakeups.start()
    streams = EventStreams(log=queries, wakeups=wakeups, max_streams=settings.max_event_streams)
    services = Services(
        commands=Commands(
            directory=registry,
            submissions=submissions,
            reads=reads,
            worker=worker,
            clock=utc_now,
            policies=policies,
            observer=metrics,
        ),
        reads=reads,
        adapter_calls=AdapterCalls(
            directory=registry,
            adapters=adapters,
            policies=policies,
            observer=metrics,
        ),
        streams=streams,
    )
    refresher = ActivityRefresher(
        lambda: read_activity(database), metrics, interval_seconds=settings.metrics_refresh_seconds
    )
    refresher.start()
    retention = start_retention(settings, database)
    _watch(metrics, registry=registry, worker=worker, streams=streams, wakeups=wakeups)
    authenticator = build_authenticator(settings, database)
    log.info(
        "service_started",
        replica_id=settings.replica_id,
        owner=worker.owner,
        database=database.url.render_as_string(hide_password=True),
        adapters=len(registry.template_ids),
        marketplaces=len(registry.marketplaces),
        auth=settings.auth,
        oidc=settings.oidc_enabled,
        policies=policies.packages if policies else None,
        validate_before_deploy=settings.validate_before_deploy,
    )
    return Runtime(
        database,
        adapters,
        worker,
        services,
        replica_id=settings.replica_id,
        registry=registry,
        metrics=metrics,
        wakeups=wakeups,
        refresher=refresher,
        publishing=publishing,
        identity=identity,
        authenticator=authenticator,
        policies=policies,
        retention=retention,
    )


def start_retention(settings: Settings, database: Database) -> RetentionTask | None:
    """The periodic purge, when ``PROVISIONER_RETENTION_DAYS`` is set."""
    if settings.retention_days is None:
        return None
    task = RetentionTask(
        database,
        RetentionPolicy.from_settings(settings, days=settings.retention_days),
        interval_seconds=settings.retention_interval_seconds,
        clock=utc_now,
    )
    task.start()
    return task


def _watch(
    metrics: Metrics,
    *,
    registry: AdapterRegistry,
    worker: Worker,
    streams: EventStreams,
    wakeups: EventWakeups,
) -> None:
    """The gauges read from this replica when scraped."""
    templates = {
        endpoint.key: endpoint.infrastructure_template_id for _, endpoint in registry.endpoints()
    }
    metrics.watch_adapters(templates, worker.slot_usage)
    metrics.live(
        "replica_operations_running",
        "Operations this replica runs now",
        (),
        lambda: [((), float(worker.running))],
    )
    metrics.live(
        "event_streams_open",
        "Event streams (text/event-stream) open on this replica",
        (),
        lambda: [((), float(streams.open_streams))],
    )
    metrics.live(
        "event_listener_connected",
        "1 while this replica LISTENs for event notifications (PostgreSQL, while streams are open)",
        (),
        lambda: [((), float(wakeups.connected))],
    )


async def hold_replica_id(settings: Settings, database: Database) -> ReplicaIdentity:
    """Hold the replica id for this process (``ReplicaIdInUseError`` if a live one does)."""
    identity = ReplicaIdentity(
        SqlReplicas(database),
        settings.replica_id,
        lease_seconds=settings.lease_seconds,
        clock=utc_now,
    )
    await identity.acquire()
    return identity


async def stop_runtime(
    runtime: Runtime, *, grace_seconds: float, delivery_grace_seconds: float | None = None
) -> None:
    """Stop the worker and the publisher together, each within its grace period: what either
    leaves (an operation, an event) is durable and taken up by another replica or the next
    start. ``delivery_grace_seconds`` (default ``grace_seconds``) bounds the deliveries."""
    await runtime.refresher.close()
    if runtime.retention is not None:
        await runtime.retention.close()
    await runtime.wakeups.close()
    stopping = [runtime.worker.stop(grace_seconds=grace_seconds)]
    if runtime.publishing is not None:
        delivery_grace = grace_seconds if delivery_grace_seconds is None else delivery_grace_seconds
        stopping.append(runtime.publishing.stop(grace_seconds=min(grace_seconds, delivery_grace)))
    await asyncio.gather(*stopping)
    if runtime.identity is not None:
        await runtime.identity.stop()
    if runtime.authenticator is not None:
        await runtime.authenticator.aclose()
    await runtime.adapters.aclose()
    if runtime.policies is not None:
        runtime.policies.close()
    await runtime.database.dispose()
    log.info("service_stopped")


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    after_start: Callable[[], None] | None = None,
) -> FastAPI:
    """The service; starting it migrates the database and starts claiming operations, then
    calls ``after_start`` (process-wide tuning belongs to the process that serves, not here).

    ``ConfigurationError`` if authentication is off and the service would not listen on a
    loopback address."""
    problem = exposure_problem(auth=settings.auth, host=settings.host)
    if problem is not None:
        raise ConfigurationError(problem)
    metrics = Metrics(replica_id=settings.replica_id, version=__version__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(settings, transport=transport, metrics=metrics)
        app.state.runtime = runtime
        app.state.services = runtime.services
        app.state.authenticator = runtime.authenticator
        if after_start is not None:
            after_start()
        try:
            yield
        finally:
            await stop_runtime(
                runtime,
                grace_seconds=settings.shutdown_grace_seconds,
                delivery_grace_seconds=settings.publication_request_timeout_seconds,
            )

    app = FastAPI(
        title="provisioner",
        version=__version__,
        summary="Deployment coordinator for data products (Witboost Tech Adapter compatible)",
        lifespan=lifespan,
        # api.routes.ui serves both from the package's own assets, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # Read by api.body: aliases may not expand a descriptor past what a body may be.
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.metrics = metrics
    app.state.stream_ping_seconds = settings.event_stream_ping_seconds
    install_problem_handlers(app)
    _publish_problems(app)
    app.add_middleware(RequestLimitsMiddleware, limit=settings.max_body_bytes)
    # Outermost: every answer, refusals of the limits included, is correlated and measured.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    app.include_router(router)
    mount_assets(app)
    _add_health(app)
    return app


def _publish_problems(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"], dependencies=[OPEN_ACCESS])
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health}},
        dependencies=[OPEN_ACCESS],
    )
    async def readyz() -> Health | JSONResponse:
        """The database is reachable and migrated to the revision this version expects."""
        runtime: Runtime = app.state.runtime
        try:
            revision = await current_revision(runtime.database)
        except DatabaseUnavailableError as exc:
            body = Health(status="unavailable", database=f"unreachable: {exc}")
            return JSONResponse(body.model_dump(by_alias=True), status_code=503)
        if revision != head_revision():
            body = Health(status="unavailable", database="not migrated", revision=revision)
            return JSONResponse(body.model_dump(by_alias=True), status_code=503)
        return Health(status="ready", database="ok", revision=revision)
