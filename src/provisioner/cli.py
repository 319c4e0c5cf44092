"""The ``provisioner`` command: run the service and talk to a running one.

Server commands (``serve``, ``migrate``, ``mock-adapter``, ``demo``) run parts of provisioner in
this process; ``token`` manages API tokens and ``purge`` removes old operations in the
database, as ``migrate`` does. Client commands (``deploy``, ``undeploy``, ``status``,
``validate``, ``plan``) speak HTTP to a running service
at ``--url`` (``PROVISIONER_URL``) with ``--token`` (``PROVISIONER_TOKEN``), as any other client
would. Exit codes: 0 success, 1 the operation failed or was cancelled (``validate``: the
descriptor is invalid), 2 the request was refused or the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from provisioner import __version__
from provisioner.progress import (
    EXIT_OK,
    EXIT_REFUSED,
    follow,
    print_plan,
    print_release,
    print_validation,
    report_refusal,
)

if TYPE_CHECKING:
    from provisioner.auth.tokens import TokenInfo
    from provisioner.settings import Settings
    from provisioner.store.database import Database

DEFAULT_URL = "http://127.0.0.1:8080"
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_REFUSED
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provisioner", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"provisioner {__version__}")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="run the service (migrates the database first)")
    serve.add_argument("--host", help="default: PROVISIONER_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default: PROVISIONER_PORT or 8080")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations and exit")
    migrate.set_defaults(run=_migrate)
    _token_parser(commands)
    purge = commands.add_parser(
        "purge",
        help="delete finished operations older than the retention (in the database; migrates "
        "it first)",
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would go, delete none")
    purge.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="default: PROVISIONER_RETENTION_DAYS",
    )
    purge.set_defaults(run=_purge)

    mock = commands.add_parser("mock-adapter", help="run the mock Tech Adapter (demos, CI)")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8093)
    mock.add_argument("--latency-ms", type=float, default=0.0, help="default operation latency")
    mock.add_argument("--mode", choices=["sync", "async"], default="sync")
    mock.add_argument(
        "--marketplace-secret", help="check the HMAC signature of Market Plane deliveries"
    )
    mock.set_defaults(run=_mock_adapter)

    demo = commands.add_parser(
        "demo", help="serve on SQLite with the mock adapter and deploy the example data product"
    )
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--adapter-port", type=int, default=8093)
    demo.add_argument("--database-url", default="sqlite+aiosqlite:///./provisioner-demo.db")
    demo.add_argument("--exit", action="store_true", help="stop once the example is deployed")
    demo.set_defaults(run=_demo)

    deploy = commands.add_parser("deploy", help="deploy a descriptor file")
    deploy.add_argument("file", type=Path, help="the deployment unit descriptor (YAML or JSON)")
    deploy.add_argument("--env", help="target environment (default: the descriptor's)")
    deploy.add_argument(
        "--component", action="append", dest="components", help="deploy only this component"
    )
    _client_options(deploy)
    deploy.set_defaults(run=_deploy)

    undeploy = commands.add_parser("undeploy", help="undeploy a deployment unit")
    undeploy.add_argument("unit", help="deployment unit id")
    undeploy.add_argument("--env", required=True, help="environment")
    undeploy.add_argument("--remove-data", action="store_true", help="also delete the data")
    undeploy.add_argument(
        "--component", action="append", dest="components", help="undeploy only this component"
    )
    _client_options(undeploy)
    undeploy.set_defaults(run=_undeploy)

    status = commands.add_parser("status", help="show a deployment unit's release status")
    status.add_argument("unit", help="deployment unit id")
    status.add_argument("--env", required=True, help="environment")
    _server_options(status)
    status.set_defaults(run=_status)
    _governance_commands(commands)
    return parser


def _token_parser(commands: Any) -> None:
    token = commands.add_parser(
        "token", help="create, list and revoke API tokens (in the database; migrates it first)"
    )
    actions = token.add_subparsers(title="actions")
    create = actions.add_parser("create", help="create a token and print its secret (only)")
    create.add_argument("name", help="who the token is for: it is recorded as requestedBy")
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        required=True,
        help="read, validate, admin, deploy:ENVIRONMENT or deploy:* (repeat for several)",
    )
    create.add_argument("--expires-in", type=int, metavar="DAYS", help="default: never")
    create.set_defaults(run=_token_create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.set_defaults(run=_token_list)
    revoke = actions.add_parser("revoke", help="revoke the active token of this name")
    revoke.add_argument("name")
    revoke.set_defaults(run=_token_revoke)


def _server_options(parser: argparse.ArgumentParser) -> None:
    default_url = os.environ.get("PROVISIONER_URL") or DEFAULT_URL
    parser.add_argument(
        "--url", default=default_url, help=f"server (default PROVISIONER_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PROVISIONER_TOKEN"),
        help="bearer token (default PROVISIONER_TOKEN; prefer it: arguments are visible to ps)",
    )


def _governance_commands(commands: Any) -> None:
    """``validate`` and ``plan``: what a deploy would meet, and what it would do."""
    validate = commands.add_parser(
        "validate",
        help="check a descriptor as a deploy would (the service's rules, policies, adapters)",
    )
    validate.add_argument("file", type=Path, help="the deployment unit descriptor")
    validate.add_argument("--env", help="target environment (default: the descriptor's)")
    _server_options(validate)
    validate.set_defaults(run=_validate)

    plan = commands.add_parser("plan", help="show what a deploy (or undeploy) would do")
    plan.add_argument("file", type=Path, help="the deployment unit descriptor")
    plan.add_argument("--env", help="target environment (default: the descriptor's)")
    plan.add_argument("--undeploy", action="store_true", help="plan the unit's undeploy")
    plan.add_argument("--remove-data", action="store_true", help="undeploy: delete the data")
    plan.add_argument(
        "--component", action="append", dest="components", help="plan only this component"
    )
    _server_options(plan)
    plan.set_defaults(run=_plan)


def _client_options(parser: argparse.ArgumentParser) -> None:
    _server_options(parser)
    parser.add_argument(
        "--wait", action="store_true", help="follow progress; exit 1 if the operation fails"
    )


def _client(args: argparse.Namespace, *, timeout: float) -> httpx.Client:
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    return httpx.Client(base_url=args.url, timeout=timeout, headers=headers)


# --- server commands ---------------------------------------------------------------------


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from provisioner.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SystemExit(f"invalid settings: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from provisioner.api.app import create_app
    from provisioner.auth.exposure import exposure_problem
    from provisioner.log import configure_logging

    settings = _settings(host=args.host, port=args.port)
    problem = exposure_problem(auth=settings.auth, host=settings.host)
    if problem is not None:
        print(f"provisioner: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    if settings.replica_id_is_explicit and not _replica_id_free(settings):
        return EXIT_REFUSED
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again so that the process
    # ends "killed by SIGTERM". A completed graceful shutdown is a clean exit: make it exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        create_app(settings, after_start=tune_garbage_collector),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )
    return EXIT_OK


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
    raise SystemExit(EXIT_OK)


def _replica_id_free(settings: Settings) -> bool:
    """Hold the explicit replica id before the server starts, so that a refusal is one line
    on stderr rather than a failed ASGI start-up; the app holds it again (same process)."""
    import logging

    from provisioner.api.app import hold_replica_id
    from provisioner.errors import ProvisionerError

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # alembic's start-up chatter is not news here
    try:
        # The row stays when the database is closed: this process holds the id from now on.
        asyncio.run(_in_database(settings, lambda database: hold_replica_id(settings, database)))
    except ProvisionerError as exc:
        print(f"provisioner: {exc.message}", file=sys.stderr)
        return False
    finally:
        root.setLevel(level)
    return True


async def _in_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """``work`` on the migrated database of ``settings``."""
    from provisioner.store.database import Database
    from provisioner.store.migrate import migrate

    database = Database(settings.database_url)
    try:
        await migrate(database)
        return await work(database)
    finally:
        await database.dispose()


def _token_command(work: Callable[[Database], Awaitable[T]]) -> T | None:
    """Run a token action on the database; print why it was refused (None) if it was."""
    from provisioner.errors import InvalidRequestError, ProvisionerError
    from provisioner.log import configure_logging

    settings = _settings()
    configure_logging(fmt=settings.log_format, level="WARNING")
    try:
        return asyncio.run(_in_database(settings, work))
    except ProvisionerError as exc:
        print(f"provisioner: {exc.message}", file=sys.stderr)
        for problem in exc.problems if isinstance(exc, InvalidRequestError) else ():
            print(f"  - {problem.path}: {problem.message}", file=sys.stderr)
        return None


def _token_create(args: argparse.Namespace) -> int:
    from provisioner.auth.tokens import create_token

    created = _token_command(
        lambda db: create_token(db, args.name, args.scopes, expires_in_days=args.expires_in)
    )
    if created is None:
        return EXIT_REFUSED
    print(created.secret)  # only the secret, on stdout: `TOKEN=$(provisioner token create ...)`
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    from provisioner.auth.tokens import list_tokens

    tokens = _token_command(lambda db: list_tokens(db, include_revoked=args.all))
    if tokens is None:
        return EXIT_REFUSED
    print_tokens(tokens)
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from provisioner.auth.tokens import revoke_token

    if _token_command(lambda db: revoke_token(db, args.name)) is None:
        return EXIT_REFUSED
    print(f"revoked {args.name}", file=sys.stderr)
    return EXIT_OK


def print_tokens(tokens: Sequence[TokenInfo]) -> None:
    """A table of tokens: name, scopes, created, last used, expiry, status."""
    from provisioner.auth.tokens import utc_now

    now = utc_now()

    def when(moment: Any) -> str:
        return "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = [("NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "STATUS")] + [
        (
            token.name,
            ",".join(token.scopes),
            when(token.created_at),
            when(token.last_used_at),
            when(token.expires_at),
            token.status(now),
        )
        for token in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def _purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from provisioner.store.retention import RetentionPolicy, purge

    settings = _settings()
    days = args.older_than if args.older_than is not None else settings.retention_days
    if days is None or days <= 0:
        print(
            "provisioner: give --older-than DAYS (above 0) or set PROVISIONER_RETENTION_DAYS",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    policy = RetentionPolicy.from_settings(settings, days=days)
    report = _token_command(
        lambda database: purge(database, policy, now=datetime.now(UTC), dry_run=args.dry_run)
    )
    if report is None:
        return EXIT_REFUSED
    print("\n".join(report.lines()))
    return EXIT_OK


def _migrate(_args: argparse.Namespace) -> int:
    from provisioner.log import configure_logging
    from provisioner.store.database import Database
    from provisioner.store.migrate import head_revision, migrate

    settings = _settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)

    async def run() -> None:
        database = Database(settings.database_url)
        try:
            await migrate(database)
        finally:
            await database.dispose()

    asyncio.run(run())
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def _mock_adapter(args: argparse.Namespace) -> int:
    from provisioner.mockadapter import run_mock_adapter

    print(f"mock Tech Adapter on http://{args.host}:{args.port}", file=sys.stderr)
    run_mock_adapter(
        host=args.host,
        port=args.port,
        default_latency_ms=args.latency_ms,
        default_mode=args.mode,
        marketplace_secret=args.marketplace_secret,
    )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from provisioner.demo import run_demo

    return run_demo(
        port=args.port,
        adapter_port=args.adapter_port,
        database_url=args.database_url,
        stay=not args.exit,
    )


# --- client commands ---------------------------------------------------------------------


def _deploy(args: argparse.Namespace) -> int:
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    with _client(args, timeout=60) as client:
        try:
            response = _post_descriptor(client, "/v1/deployments", content, args)
        except (httpx.HTTPError, UnicodeDecodeError) as exc:
            print(f"cannot deploy: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        if response.status_code != 202:
            return report_refusal(response)
        return follow(client, response.json(), wait=args.wait)


def _post_descriptor(
    client: httpx.Client,
    path: str,
    content: bytes,
    args: argparse.Namespace,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a descriptor file: as YAML, or in the JSON envelope when components are chosen."""
    components = getattr(args, "components", None)
    if components:
        body: dict[str, Any] = {"descriptor": content.decode("utf-8"), "components": components}
        if args.env:
            body["environment"] = args.env
        return client.post(path, json=body, params=params)
    query = {**(params or {}), **({"environment": args.env} if args.env else {})}
    return client.post(
        path, content=content, params=query, headers={"content-type": "application/yaml"}
    )


def _validate(args: argparse.Namespace) -> int:
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    with _client(args, timeout=600) as client:
        try:
            response = _post_descriptor(client, "/v1/validations", content, args)
        except httpx.HTTPError as exc:
            print(f"cannot validate: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    if response.status_code != 200:
        return report_refusal(response)
    return print_validation(response.json())


def _plan(args: argparse.Namespace) -> int:
    try:
        content = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    dry = {"dryRun": "true"}
    with _client(args, timeout=60) as client:
        try:
            if args.undeploy:
                body = _undeploy_body(content, args)
                if body is None:
                    return EXIT_REFUSED
                response = client.post("/v1/undeployments", json=body, params=dry)
            else:
                response = _post_descriptor(client, "/v1/deployments", content, args, dry)
        except (httpx.HTTPError, UnicodeDecodeError) as exc:
            print(f"cannot plan: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    if response.status_code != 200:
        return report_refusal(response)
    print_plan(response.json())
    return EXIT_OK


def _undeploy_body(content: bytes, args: argparse.Namespace) -> dict[str, Any] | None:
    """The undeploy of the unit a descriptor file describes (its id, and its environment
    unless ``--env`` says another)."""
    import yaml

    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return None
    unit = document.get("id") if isinstance(document, dict) else None
    environment = args.env or (document.get("environment") if isinstance(document, dict) else None)
    if not isinstance(unit, str) or not isinstance(environment, str):
        print(f"{args.file} names no unit id, or no environment: give --env", file=sys.stderr)
        return None
    body: dict[str, Any] = {
        "deploymentUnitId": unit,
        "environment": environment,
        "removeData": args.remove_data,
    }
    if args.components:
        body["components"] = args.components
    return body


def _undeploy(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "deploymentUnitId": args.unit,
        "environment": args.env,
        "removeData": args.remove_data,
    }
    if args.components:
        body["components"] = args.components
    with _client(args, timeout=60) as client:
        try:
            response = client.post("/v1/undeployments", json=body)
        except httpx.HTTPError as exc:
            print(f"cannot undeploy: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        if response.status_code != 202:
            return report_refusal(response)
        return follow(client, response.json(), wait=args.wait)


def _status(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    path = f"/v1/deployment-units/{quote(args.unit, safe=':')}/environments/{quote(args.env)}"
    with _client(args, timeout=30) as client:
        try:
            response = client.get(path)
        except httpx.HTTPError as exc:
            print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    if response.status_code != 200:
        return report_refusal(response)
    print_release(response.json())
    return EXIT_OK
