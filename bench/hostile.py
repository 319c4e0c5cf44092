"""Hostile input: how fast each body an attacker could send is refused, and how responsive the
service stays meanwhile.

    python bench/hostile.py [--repeat 3]

Starts the mock Tech Adapter and the service (SQLite, the default 5 MiB body limit) and posts,
one at a time, each body of the "safe to expose" issue to POST /v1/deployments while a second
client reads /healthz every 10 ms. For each it prints the answer's status, its time (the
median of ``--repeat`` posts) as a ratio to the same service's answer to a small valid
dry run in the same run, the worst /healthz latency while it was answered, and the service's
peak RSS. Exit code 1 if any body is not refused with a 4xx problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from servers import mock_adapter, peak_memory_bytes, service
from workloads import ENVIRONMENT, TEMPLATE_ID

UNIT = "urn:dmb:dp:bench:hostile:0"
HEAD = f"id: {UNIT}\nname: x\nversion: '1'\nenvironment: {ENVIRONMENT}\n"
YAML = {"content-type": "application/yaml"}
JSON = {"content-type": "application/json"}


def _unit(components: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": UNIT,
        "name": "x",
        "version": "1",
        "environment": ENVIRONMENT,
        "components": components,
        **fields,
    }


def _component(cid: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "name": cid,
        "kind": "workload",
        "infrastructureTemplateId": TEMPLATE_ID,
        **fields,
    }


def _json(body: Any) -> dict[str, Any]:
    return {"content": json.dumps({"descriptor": body}), "headers": JSON}


def bodies() -> dict[str, Callable[[], dict[str, Any]]]:
    """Each hostile body (built when sent), by what it is."""
    aliases = f"l1: &l1 [{', '.join(['*s'] * 100)}]\nl2: [{', '.join(['*l1'] * 100)}]\n"
    return {
        "40,000 unknown dependsOn ids": lambda: _json(
            _unit([_component("a", dependsOn=[f"u{i}" for i in range(40_000)])])
        ),
        "10 KiB scalar x 100 x 100 aliases": lambda: {
            "content": HEAD + f"components: []\ns: &s {'x' * 10240}\n" + aliases,
            "headers": YAML,
        },
        "1 MiB scalar x 100 x 100 aliases": lambda: {
            "content": HEAD + f"components: []\ns: &s {'x' * 1048576}\n" + aliases,
            "headers": YAML,
        },
        "sexagesimal integer, 160,000 parts": lambda: {
            "content": HEAD + "components: []\nv: " + ":".join(["1"] * 160_000) + "\n",
            "headers": YAML,
        },
        "integer of 100,000 digits": lambda: {
            "content": HEAD + "components: []\nv: " + "9" * 100_000 + "\n",
            "headers": YAML,
        },
        "hex literal of 100,000 digits": lambda: {
            "content": HEAD + "components: []\nv: 0x" + "f" * 100_000 + "\n",
            "headers": YAML,
        },
        "duplicate id key (YAML)": lambda: {
            "content": HEAD + f"id: {UNIT}-other\ncomponents: []\n",
            "headers": YAML,
        },
        "1e400 (JSON)": lambda: {
            "content": '{"descriptor": ' + json.dumps(_unit([]))[:-1] + ', "x": 1e400}}',
            "headers": JSON,
        },
        ".nan (YAML)": lambda: {"content": HEAD + "components: []\nv: .nan\n", "headers": YAML},
        "environment 'dev/x'": lambda: _json(_unit([], environment="dev/x")),
        "id with U+202E": lambda: _json(_unit([_component("a\u202eb")])),
        '"removeData": "yes"': lambda: {
            "content": json.dumps(
                {"deploymentUnitId": UNIT, "environment": ENVIRONMENT, "removeData": "yes"}
            ),
            "headers": JSON,
            "path": "/v1/undeployments",
        },
    }


async def answer(url: str, request: dict[str, Any]) -> tuple[int, str, float, float]:
    """Post ``request``; its status, content type, time, and the worst /healthz meanwhile."""
    request = dict(request)
    path = request.pop("path", "/v1/deployments")
    worst = 0.0
    answered = asyncio.Event()
    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as client,
        httpx.AsyncClient(base_url=url, timeout=120) as prober,
    ):

        async def probe() -> None:
            nonlocal worst
            while not answered.is_set():
                started = time.perf_counter()
                await prober.get("/healthz")
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.01)

        probing = asyncio.create_task(probe())
        started = time.perf_counter()
        response = await client.post(path, **request)
        elapsed = time.perf_counter() - started
        answered.set()
        await probing
    return response.status_code, response.headers.get("content-type", ""), elapsed, worst


async def run(url: str, pid: int, repeat: int) -> bool:
    valid = {
        "content": json.dumps({"descriptor": _unit([_component("a")])}),
        "headers": JSON,
        "path": "/v1/deployments?dryRun=true",
    }
    baseline = statistics.median([(await answer(url, valid))[2] for _ in range(repeat)])
    print(f"baseline: a valid one-component dry run, median {baseline * 1000:.1f} ms")
    print(f"{'body':<38} {'status':>6} {'time':>9} {'x base':>8} {'healthz max':>12}")
    refused = True
    for name, build in bodies().items():
        runs = [await answer(url, build()) for _ in range(repeat)]
        status, kind = runs[0][0], runs[0][1]
        elapsed = statistics.median(run[2] for run in runs)
        worst = max(run[3] for run in runs)
        ok = 400 <= status < 500 and kind == "application/problem+json"
        refused &= ok
        print(
            f"{name:<38} {status:>6} {elapsed * 1000:>7.1f}ms {elapsed / baseline:>8.1f}"
            f" {worst * 1000:>10.1f}ms{'' if ok else '  NOT REFUSED'}"
        )
    print(f"service peak RSS: {peak_memory_bytes(pid) / 2**20:.0f} MiB")
    return refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provisioner-hostile-") as tmp:
        workdir = Path(tmp)
        with (
            mock_adapter(workdir) as adapter,
            service(
                workdir,
                database_url=f"sqlite+aiosqlite:///{workdir / 'provisioner.db'}",
                adapter_url=adapter.url,
                label="hostile",
            ) as server,
        ):
            return 0 if asyncio.run(run(server.url, server.pid, args.repeat)) else 1


if __name__ == "__main__":
    sys.exit(main())
