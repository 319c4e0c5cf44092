"""The FastAPI application, wired once from ``Settings``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from provisioner import __version__
from provisioner.adapters.client import ClientPolicy, TechAdapterClient
from provisioner.adapters.registry import AdapterRegistry
from provisioner.api.limits import RequestLimitsMiddleware
from provisioner.api.problems import install_problem_handlers, problem_documents
from provisioner.api.routes import router
from provisioner.api.schemas import Health
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.worker import Worker, WorkerConfig, utc_now
from provisioner.errors import DatabaseUnavailableError
from provisioner.service import DeploymentService
from provisioner.settings import Settings
from provisioner.store.database import Database
from provisioner.store.migrate import current_revision, head_revision, migrate
from provisioner.store.operations import SqlOperationStore
from provisioner.store.queries import Queries
from provisioner.store.submissions import Submissions

log = structlog.get_logger(__name__)
YOUNG_GC_THRESHOLD = 20_000  # allocations between young-generation collections (default 700)


@dataclass(slots=True)
class Runtime:
    """The long-lived parts of a running service."""

    database: Database
    registry: AdapterRegistry
    adapters: TechAdapterClient
    worker: Worker
    service: DeploymentService


def load_registry(settings: Settings) -> AdapterRegistry:
    if settings.config is None:
        log.warning("no_adapter_registry", hint="set PROVISIONER_CONFIG to a YAML file")
        return AdapterRegistry.empty(default_timeout_seconds=settings.adapter_timeout_seconds)
    return AdapterRegistry.from_file(
        settings.config, default_timeout_seconds=settings.adapter_timeout_seconds
    )


def client_policy(settings: Settings) -> ClientPolicy:
    return ClientPolicy(
        retry_attempts=settings.retry_attempts,
        retry_max_seconds=settings.retry_max_seconds,
        poll_initial_seconds=settings.poll_initial_seconds,
        poll_max_seconds=settings.poll_max_seconds,
        poll_multiplier=settings.poll_multiplier,
        poll_error_budget=settings.poll_error_budget,
        max_connections=settings.max_concurrency,
    )


async def start_runtime(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Runtime:
    """Migrate the database, load the registry, start the worker."""
    registry = load_registry(settings)
    # A write transaction idle for a whole lease belongs to a paused replica, whose leases
    # are lapsing anyway: ending it frees the rows it locked for the replica taking over.
    # Never less than 10 s, so that a short lease cannot cut a slow but live submission.
    database = Database(
        settings.database_url,
        idle_transaction_timeout_seconds=max(settings.lease_seconds, 10.0),
    )
    await migrate(database)
    adapters = TechAdapterClient(client_policy(settings), transport=transport)
    worker = Worker(
        store=SqlOperationStore(database),
        adapters=adapters,
        directory=registry,
        config=WorkerConfig(
            replica_id=settings.replica_id,
            max_running_operations=settings.max_running_operations,
            max_loop_lag_seconds=settings.max_loop_lag_seconds,
            max_concurrency=settings.max_concurrency,
            lease_seconds=settings.lease_seconds,
            claim_interval_seconds=settings.claim_interval_seconds,
            operation_timeout_seconds=settings.operation_timeout_seconds,
            failpoints=Failpoints(settings.failpoints),
        ),
    )
    worker.start()
    service = DeploymentService(
        directory=registry,
        submissions=Submissions(database),
        queries=Queries(database),
        adapters=adapters,
        worker=worker,
        clock=utc_now,
    )
    # What is alive now (modules, the app, schemas, metadata) lives as long as the process.
    # Freezing it keeps full collections from walking it again and again: under load, each
    # replica paused ~200 ms in generation-2 collections before this, ~50 ms after. Requests
    # make many short-lived objects: collecting the young generation less often costs less.
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    log.info(
        "service_started",
        replica_id=settings.replica_id,
        owner=worker.owner,
        database=database.url.render_as_string(hide_password=True),
        adapters=len(registry.template_ids),
    )
    return Runtime(database, registry, adapters, worker, service)


async def stop_runtime(runtime: Runtime, *, grace_seconds: float) -> None:
    await runtime.worker.stop(grace_seconds=grace_seconds)
    await runtime.adapters.aclose()
    await runtime.database.dispose()
    log.info("service_stopped")


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The service; starting it migrates the database and starts claiming operations."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(settings, transport=transport)
        app.state.runtime = runtime
        app.state.service = runtime.service
        try:
            yield
        finally:
            await stop_runtime(runtime, grace_seconds=settings.shutdown_grace_seconds)

    app = FastAPI(
        title="provisioner",
        version=__version__,
        summary="Deployment coordinator for data products (Witboost Tech Adapter compatible)",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    _publish_problems(app)
    app.add_middleware(RequestLimitsMiddleware, limit=settings.max_body_bytes)
    app.include_router(router)
    _add_health(app)
    return app


def _publish_problems(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_documents(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health}},
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
