"""The processes a benchmark runs against: the mock Tech Adapter, the service, a database.

Each server is a child process on a free loopback port with its output in a log file; every
one started is stopped by its owner (``with`` blocks), so nothing outlives the benchmark.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from workloads import TEMPLATE_ID

POSTGRES_ADMIN_URL = os.environ.get(
    "PROVISIONER_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


class ServerFailedError(RuntimeError):
    """A server exited early or did not become ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChildServer:
    """A server in a child process, ready once ``ready_path`` answers 200."""

    def __init__(
        self, *, name: str, port: int, argv: list[str], env: dict[str, str], log: Path
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = argv
        self._env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, ready_path: str, timeout: float = 60.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self._argv, env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailedError(f"{self.name} exited: {self._tail()}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise ServerFailedError(f"{self.name} did not become ready: {self._tail()}")

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise ServerFailedError(f"{self.name} is not running: {self._tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@contextmanager
def mock_adapter(workdir: Path) -> Iterator[ChildServer]:
    """``provisioner mock-adapter`` on a free port (sync mode, latency from each component)."""
    port = free_port()
    server = ChildServer(
        name="mock adapter",
        port=port,
        argv=[sys.executable, "-m", "provisioner", "mock-adapter", "--port", str(port)],
        env=dict(os.environ),
        log=workdir / "mock-adapter.log",
    )
    try:
        server.start(ready_path="/mock/health")
        yield server
    finally:
        server.stop()


@contextmanager
def service(
    workdir: Path,
    *,
    database_url: str,
    adapter_url: str,
    label: str,
    replica_id: str = "bench",
) -> Iterator[ChildServer]:
    """``provisioner serve`` as in production: INFO logs to a file, uvicorn's own loop."""
    registry = workdir / "registry.yaml"
    registry.write_text(
        f"techAdapters:\n  - infrastructureTemplateId: {TEMPLATE_ID}\n    url: {adapter_url}\n"
    )
    port = free_port()
    server = ChildServer(
        name=f"service ({label})",
        port=port,
        argv=[sys.executable, "-m", "provisioner", "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")},
            "PROVISIONER_DATABASE_URL": database_url,
            "PROVISIONER_CONFIG": str(registry),
            "PROVISIONER_MAX_CONCURRENCY": "64",
            "PROVISIONER_REPLICA_ID": replica_id,
            "PROVISIONER_PORT": str(port),
            # Loopback only; the benchmarks measure the engine, not authentication.
            "PROVISIONER_AUTH": "off",
            # The baseline (bench/baseline.py) sends byte-identical provision requests and no
            # validation: the service validating each component first would be measured
            # against work the baseline does not do.
            "PROVISIONER_VALIDATE_BEFORE_DEPLOY": "false",
        },
        log=workdir / f"service-{label}.log",
    )
    try:
        server.start(ready_path="/readyz")
        yield server
    finally:
        server.stop()


def peak_memory_bytes(pid: int) -> int:
    """VmHWM (peak resident set) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ServerFailedError(f"no VmHWM for process {pid}")


# --- PostgreSQL -------------------------------------------------------------------------------


async def _execute(url: str, statement: str, *, scalar: bool = False) -> str | None:
    """Run one statement outside a transaction; its single value if ``scalar``."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(statement))
            return str(result.scalar_one()) if scalar else None
    finally:
        await engine.dispose()


def postgres_version(admin_url: str = POSTGRES_ADMIN_URL) -> str | None:
    """The server version, or None when PostgreSQL is not reachable."""
    try:
        return asyncio.run(
            asyncio.wait_for(_execute(admin_url, "SHOW server_version", scalar=True), 10)
        )
    except Exception:
        return None


@contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A throwaway database, dropped WITH (FORCE) at the end."""
    name = f"provisioner_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
