"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL database), the mock Tech
Adapter and the service, each a real server on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from provisioner.api.app import create_app
from provisioner.mockadapter import create_mock_app
from provisioner.settings import Settings
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from tests.marketplace import SECRET as MARKET_SECRET
from tests.processes import ServiceProcess
from tests.support import ServerThread, write_registry

POSTGRES_ADMIN_URL = os.environ.get(
    "PROVISIONER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
TABLES = (
    "operations, tasks, events, releases, components, publications, published_components, "
    "deliveries, api_tokens, replicas"
)


@pytest.fixture(autouse=True, scope="session")
def _auth_off_unless_asked() -> Iterator[None]:
    """Tests that are not about authentication run with it off (every service in them listens
    on 127.0.0.1, where that is allowed); the auth tests turn it on explicitly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROVISIONER_AUTH", "off")
        yield


# Tests that start service processes: the suite-wide timeout (pyproject.toml) is a guard
# against hangs sized for in-process tests; a loaded machine can take a minute just to start
# the two or three processes of one of these.
SLOW_TEST_TIMEOUT_SECONDS = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_SECONDS))


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL; skipped without one (a failure under CI)."""
    try:
        asyncio.run(asyncio.wait_for(_execute(POSTGRES_ADMIN_URL, "SELECT 1"), 10))
    except Exception as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A migrated throwaway database for this test session, dropped at the end."""
    name = f"provisioner_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(postgres_server, f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)

    async def migrated() -> None:
        database = Database(url)
        await migrate(database)
        await database.dispose()

    asyncio.run(migrated())
    yield url
    asyncio.run(_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    asyncio.run(_execute(postgres_database, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return postgres_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'provisioner.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
def mock_adapter() -> Iterator[str]:
    """One mock Tech Adapter for the session (tests use their own unit ids)."""
    server = ServerThread(create_mock_app()).start()
    yield server.url
    server.stop(force=True)  # slow answers that were cut on our side may still be pending


ServiceFactory = Callable[..., ServerThread]


@pytest.fixture
def service_factory(tmp_path: Path, mock_adapter: str) -> Iterator[ServiceFactory]:
    """Start the service on loopback; every service started is stopped at teardown."""
    started: list[ServerThread] = []
    registry = write_registry(tmp_path, mock_adapter)

    def start(database_url: str, **overrides: Any) -> ServerThread:
        values: dict[str, Any] = {
            "config": registry,
            "replica_id": f"test-{uuid.uuid4().hex[:8]}",
            "poll_initial_seconds": 0.02,
            "poll_max_seconds": 0.2,
            "retry_max_seconds": 2.0,
            "shutdown_grace_seconds": 1.0,
            "log_level": "WARNING",
        }
        settings = Settings(database_url=database_url, **(values | overrides))
        server = ServerThread(create_app(settings)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def service(database_url: str, service_factory: ServiceFactory) -> ServerThread:
    return service_factory(database_url)


@pytest.fixture
async def client(service: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        yield http


@pytest.fixture
async def mock(mock_adapter: str) -> AsyncIterator[httpx.AsyncClient]:
    """The mock adapter's control API (``/mock/calls``, ``/mock/components``)."""
    async with httpx.AsyncClient(base_url=mock_adapter, timeout=30) as http:
        yield http


@pytest.fixture
def market() -> Iterator[ServerThread]:
    """A mock Market Plane of the test's own (its failure knob and recorded deliveries are
    per instance), that checks signatures with ``tests.marketplace.SECRET``."""
    server = ServerThread(create_mock_app(marketplace_secret=MARKET_SECRET)).start()
    yield server
    server.stop(force=True)


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Service processes a test starts; any still running are killed at teardown."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def unit_id(request: pytest.FixtureRequest) -> str:
    """A deployment unit id unique to this test, so the shared mock adapter's state is too."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:40]
    return f"urn:dmb:dp:test:{name}-{uuid.uuid4().hex[:8]}:0"
