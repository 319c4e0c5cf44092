"""``provisioner demo``: the service on SQLite with the mock adapter, deploying the example.

Everything runs in this one process: the mock Tech Adapter, the service (with the example
policies of ``examples/policies``), and a client that deploys ``examples/data-product.yaml``
and prints its progress. The servers keep running until Ctrl-C so the API can be explored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import uvicorn

from provisioner.api.app import create_app
from provisioner.log import configure_logging
from provisioner.mockadapter import create_mock_app
from provisioner.resources import bundled
from provisioner.settings import Settings


def run_demo(*, port: int, adapter_port: int, database_url: str, stay: bool) -> int:
    configure_logging(fmt="console", level="WARNING")
    return asyncio.run(_demo(port, adapter_port, database_url, stay))


async def _demo(port: int, adapter_port: int, database_url: str, stay: bool) -> int:
    examples = bundled("examples", "data-product.yaml")
    # The example registry reads the mock adapter's address from this variable.
    os.environ["MOCK_ADAPTER_URL"] = f"http://127.0.0.1:{adapter_port}"
    # Authentication off, on loopback only: the quickstart needs no token.
    settings = Settings(
        database_url=database_url,
        config=examples / "config.yaml",
        policies=examples / "policies",
        host="127.0.0.1",
        port=port,
        auth="off",
    )
    servers = [
        uvicorn.Server(_config(create_mock_app(), adapter_port)),
        uvicorn.Server(_config(create_app(settings), port)),
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        if not await _started(servers, tasks):
            return 2
        url = f"http://127.0.0.1:{port}"
        print(
            f"provisioner on {url} (database {database_url}), mock Tech Adapter on port "
            f"{adapter_port}\n"
        )
        code = await asyncio.to_thread(_deploy_example, url, examples / "data-product.yaml")
        if stay and code == 0:
            print(f"\nDashboard: {url}/ui  -  API docs: {url}/docs  -  stop with Ctrl-C")
            await asyncio.gather(*tasks)
        return code
    finally:
        for server in servers:
            server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks)


def _config(app: Any, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


async def _started(servers: list[uvicorn.Server], tasks: list[asyncio.Task[None]]) -> bool:
    async with asyncio.timeout(30):
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                print("a server could not start (is the port in use?)")
                return False
            await asyncio.sleep(0.05)
    return True


def _deploy_example(url: str, descriptor: Path) -> int:
    """Deploy the example as ``provisioner deploy --wait`` would, then show the release."""
    from provisioner.cli.exits import CommandError, Exit
    from provisioner.cli.http import Api, Server, release_path
    from provisioner.cli.options import Output
    from provisioner.cli.render import print_release
    from provisioner.cli.submit import Deadline, post_descriptor, report

    server = Server(url)
    try:
        with Api(server) as api:
            answer = post_descriptor(
                api, "/v1/deployments", descriptor.read_bytes(), environment=None, components=None
            )
            operation = answer.json()
            code = report(server, operation, wait=True, output=Output.text, deadline=Deadline(None))
            release = api.json(
                "GET", release_path(operation["deploymentUnitId"], operation["environment"])
            )
    except CommandError as exc:
        exc.report()
        return int(exc.code)
    print()
    print_release(release)
    return int(code) if code is not Exit.OK else 0
