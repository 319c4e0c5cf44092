"""The ``provisioner`` command: run the service and talk to a running one.

Server commands (``serve``, ``migrate``, ``mock-adapter``, ``demo``) run parts of provisioner in
this process. Client commands (``deploy``, ``undeploy``, ``status``, ``validate``, ``plan``)
speak HTTP to a running service at ``--url``, as any other client would. Exit codes: 0
success, 1 the operation failed or was cancelled (``validate``: the descriptor is invalid), 2
the request was refused or the server could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

DEFAULT_URL = "http://127.0.0.1:8080"


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
    status.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    status.set_defaults(run=_status)
    _governance_commands(commands)
    return parser


def _governance_commands(commands: Any) -> None:
    """``validate`` and ``plan``: what a deploy would meet, and what it would do."""
    validate = commands.add_parser(
        "validate",
        help="check a descriptor as a deploy would (the service's rules, policies, adapters)",
    )
    validate.add_argument("file", type=Path, help="the deployment unit descriptor")
    validate.add_argument("--env", help="target environment (default: the descriptor's)")
    validate.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    validate.set_defaults(run=_validate)

    plan = commands.add_parser("plan", help="show what a deploy (or undeploy) would do")
    plan.add_argument("file", type=Path, help="the deployment unit descriptor")
    plan.add_argument("--env", help="target environment (default: the descriptor's)")
    plan.add_argument("--undeploy", action="store_true", help="plan the unit's undeploy")
    plan.add_argument("--remove-data", action="store_true", help="undeploy: delete the data")
    plan.add_argument(
        "--component", action="append", dest="components", help="plan only this component"
    )
    plan.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    plan.set_defaults(run=_plan)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    parser.add_argument(
        "--wait", action="store_true", help="follow progress; exit 1 if the operation fails"
    )


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
    from provisioner.log import configure_logging

    settings = _settings(host=args.host, port=args.port)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
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
    with httpx.Client(base_url=args.url, timeout=60) as client:
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
    with httpx.Client(base_url=args.url, timeout=600) as client:
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
    with httpx.Client(base_url=args.url, timeout=60) as client:
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
    with httpx.Client(base_url=args.url, timeout=60) as client:
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
    with httpx.Client(base_url=args.url, timeout=30) as client:
        try:
            response = client.get(path)
        except httpx.HTTPError as exc:
            print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    if response.status_code != 200:
        return report_refusal(response)
    print_release(response.json())
    return EXIT_OK
