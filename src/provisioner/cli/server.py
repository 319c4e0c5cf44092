"""The commands that run parts of provisioner in this process: ``serve``, ``migrate``,
``purge``, ``mock-adapter`` and ``demo``.

``serve`` checks what it needs before it starts serving, in order (settings, exposure, the
registry, the policies, the port, the database, the replica id), and refuses to start with one
line on stderr and an exit code of its own for each (``exits.Exit``), never a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.options import Output, OutputOption
from provisioner.cli.render import print_json

if TYPE_CHECKING:
    from provisioner.settings import Settings
    from provisioner.store.database import Database

T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    """The settings from the environment; one line naming each bad variable if they are bad."""
    from pydantic import ValidationError

    from provisioner.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"PROVISIONER_{'_'.join(str(p) for p in error['loc']).upper() or '?'}: {error['msg']}"
            for error in exc.errors()
        )
        raise CommandError(
            Exit.BAD_SETTINGS, f"provisioner: invalid settings: {problems}"
        ) from None


def serve(
    host: Annotated[
        str | None, typer.Option(help="Default: PROVISIONER_HOST or 127.0.0.1.", show_default=False)
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Default: PROVISIONER_PORT or 8080.", show_default=False)
    ] = None,
) -> Exit:
    """Run the service (migrates the database first)."""
    import uvicorn

    from provisioner.api.app import create_app
    from provisioner.log import configure_logging

    config = settings(host=host, port=port)
    configure_logging(fmt=config.log_format, level=config.log_level)
    listening = preflight(config)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so that the process
    # ends "killed by SIGTERM". A completed graceful shutdown is a clean exit: make it exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, after_start=tune_garbage_collector),
            host=config.host,  # what it logs: it serves on the socket bound by the checks
            port=config.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(config.shutdown_grace_seconds) + 5,
        )
    )
    server.run(sockets=[listening])
    return Exit.OK if server.started else Exit.START_FAILED


def preflight(config: Settings) -> socket.socket:
    """Everything ``serve`` needs, checked before it serves; the socket it will listen on."""
    from provisioner.api.app import hold_replica_id, load_registry
    from provisioner.auth.exposure import exposure_problem
    from provisioner.errors import ProvisionerError, ReplicaIdInUseError

    problem = exposure_problem(auth=config.auth, host=config.host)
    if problem is not None:
        raise CommandError(Exit.AUTH_OFF_IN_PUBLIC, f"provisioner: {problem}")
    with _quiet():
        try:
            load_registry(config)
        except (ProvisionerError, OSError) as exc:
            raise CommandError(
                Exit.BAD_REGISTRY, f"provisioner: bad registry: {_why(exc)}"
            ) from None
        if config.policies is not None:
            _check_policies(config)
        listening = _listen(config.host, config.port)
        try:
            asyncio.run(_in_database(config, lambda database: hold_replica_id(config, database)))
        except ReplicaIdInUseError as exc:
            listening.close()
            raise CommandError(Exit.REPLICA_ID_IN_USE, f"provisioner: {exc.message}") from None
        except (ProvisionerError, OSError) as exc:
            listening.close()
            url = _safe_url(config.database_url)
            raise CommandError(
                Exit.DATABASE_UNREACHABLE,
                f"provisioner: cannot use the database {url}: {_why(exc)}",
            ) from None
    return listening


def _check_policies(config: Settings) -> None:
    from provisioner.errors import ProvisionerError
    from provisioner.policies import PolicyEngine

    assert config.policies is not None

    async def load() -> None:
        (await PolicyEngine.load(config.policies)).close()  # type: ignore[arg-type]

    try:
        asyncio.run(load())
    except (ProvisionerError, OSError) as exc:
        raise CommandError(Exit.BAD_POLICY, f"provisioner: bad policy: {_why(exc)}") from None


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts (uvicorn serves on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host.strip("[]"), port))
    except OSError as exc:
        listening.close()
        raise CommandError(
            Exit.PORT_IN_USE, f"provisioner: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    listening.set_inheritable(True)
    return listening


def _why(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())  # one line, whatever the error's text holds


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"


@contextmanager
def _quiet() -> Iterator[None]:
    """Start-up chatter (alembic, policy loading) is not news while checking."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


# Allocations between young-generation collections (the default is 700).
YOUNG_GC_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """For a long-running service, once it has started.

    What is alive then (modules, the app, schemas, metadata) lives as long as the process.
    Freezing it keeps full collections from walking it again and again: under load, each
    replica paused ~200 ms in generation-2 collections before this, ~50 ms after. Requests make
    many short-lived objects: collecting the young generation less often costs less.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(Exit.OK)


async def _in_database(config: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """``work`` on the migrated database of ``config``."""
    from provisioner.store.database import Database
    from provisioner.store.migrate import migrate

    database = Database(config.database_url)
    try:
        await migrate(database)
        return await work(database)
    finally:
        await database.dispose()


def in_database(config: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the migrated database; a refusal is a ``CommandError`` (exit 2)."""
    from provisioner.errors import DatabaseUnavailableError, InvalidRequestError, ProvisionerError

    try:
        return asyncio.run(_in_database(config, work))
    except DatabaseUnavailableError as exc:
        url = _safe_url(config.database_url)
        raise CommandError(
            Exit.DATABASE_UNREACHABLE, f"provisioner: cannot use the database {url}: {_why(exc)}"
        ) from None
    except ProvisionerError as exc:
        problems = exc.problems if isinstance(exc, InvalidRequestError) else ()
        raise CommandError(
            Exit.REFUSED,
            f"provisioner: {exc.message}",
            *(f"- {problem.path}: {problem.message}" for problem in problems),
        ) from None


def migrate() -> Exit:
    """Apply the database migrations and exit."""
    from provisioner.log import configure_logging
    from provisioner.store.migrate import head_revision

    config = settings()
    configure_logging(fmt=config.log_format, level=config.log_level)

    async def nothing(_database: Database) -> None:
        return None

    in_database(config, nothing)
    print(f"database at revision {head_revision()}")
    return Exit.OK


def purge(
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            help="Purge what ended longer ago than DAYS (default: PROVISIONER_RETENTION_DAYS).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
    output: OutputOption = Output.text,
) -> Exit:
    """Delete finished operations older than DAYS, with their tasks, events and delivered
    publications, never what a release or component still names (README, Retention)."""
    from datetime import UTC, datetime

    from provisioner.log import configure_logging
    from provisioner.store.retention import RetentionPolicy
    from provisioner.store.retention import purge as purge_history

    config = settings()
    configure_logging(fmt=config.log_format, level="WARNING")
    days = older_than if older_than is not None else config.retention_days
    if days is None or days <= 0:
        raise CommandError(
            Exit.REFUSED,
            "provisioner: give --older-than DAYS (above 0) or set PROVISIONER_RETENTION_DAYS",
        )
    policy = RetentionPolicy.from_settings(config, days=days)
    report = in_database(
        config,
        lambda database: purge_history(database, policy, now=datetime.now(UTC), dry_run=dry_run),
    )
    if output is Output.json:
        print_json(
            {
                "cutoff": report.cutoff.isoformat(),
                "dryRun": report.dry_run,
                "batches": report.batches,
                "rows": report.rows,
            }
        )
    else:
        print("\n".join(report.lines()))
    return Exit.OK


def mock_adapter(
    host: Annotated[str, typer.Option(help="Where it listens.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Its port.")] = 8093,
    latency_ms: Annotated[float, typer.Option(help="Default operation latency.")] = 0.0,
    mode: Annotated[str, typer.Option(help="sync (200) or async (202 + token).")] = "sync",
    marketplace_secret: Annotated[
        str | None,
        typer.Option(
            help="Check the HMAC signature of Market Plane deliveries.", show_default=False
        ),
    ] = None,
) -> Exit:
    """Run the mock Tech Adapter (demos, CI)."""
    from provisioner.mockadapter import run_mock_adapter

    if mode not in ("sync", "async"):
        raise CommandError(Exit.REFUSED, f"--mode is sync or async, not {mode!r}")
    _listen(host, port).close()  # a port in use is one line, not uvicorn's log
    print(f"mock Tech Adapter on http://{host}:{port}", file=sys.stderr)
    run_mock_adapter(
        host=host,
        port=port,
        default_latency_ms=latency_ms,
        default_mode=mode,
        marketplace_secret=marketplace_secret,
    )
    return Exit.OK


def demo(
    port: Annotated[int, typer.Option(help="The service's port.")] = 8080,
    adapter_port: Annotated[int, typer.Option(help="The mock adapter's port.")] = 8093,
    database_url: Annotated[
        str, typer.Option(help="Where the demo keeps its state.")
    ] = "sqlite+aiosqlite:///./provisioner-demo.db",
    exit_: Annotated[
        bool, typer.Option("--exit", help="Stop once the example is deployed.")
    ] = False,
) -> Exit:
    """Serve on SQLite with the mock adapter and deploy the example data product."""
    from provisioner.demo import run_demo

    return Exit(
        run_demo(port=port, adapter_port=adapter_port, database_url=database_url, stay=not exit_)
    )
