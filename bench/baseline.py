"""The baseline: the service's adapter traffic from a plain asyncio + httpx executor.

No persistence, no API: for each component one ``POST /v1/provision`` with the body the service
would send, started the moment all its dependencies have finished, at most 64 in flight. It runs
in its own process on uvloop (the loop uvicorn picks for the service) and prints its makespans
as JSON on stdout::

    python bench/baseline.py --adapter-url http://127.0.0.1:8093 --workloads chain,wide \\
        --repeat 3 --naive-repeat 3 --loop-sockets-repeat 3

With ``--serve`` it warms up, then deploys one workload per line it reads on stdin (its name)
and answers each with one JSON line: what ``bench/run.py`` uses to run the baseline's deploys
in turns with the service's, so that both are measured on the machine as it is at that moment.
An empty line (or the end of stdin) ends it; ``peak`` answers the peak resident set so far.

The baseline's pools are httpx's as installed (httpcore's anyio network layer). With
``--loop-sockets-repeat`` each workload also runs over pools on the service's own network layer
(``provisioner.adapters.network``): the service against that figure is its overhead beyond
the HTTP client it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import httpx
import uvloop

from measure import cpu_seconds
from payloads import FirstDeployPayloads
from provisioner.adapters.pool import use_loop_sockets
from provisioner.domain.documents import load_yaml
from workloads import MAX_IN_FLIGHT, Shape, descriptor, descriptor_yaml, shape

SHARD_SIZE = 8
_HEADERS = {"content-type": "application/json", "accept": "application/json, text/plain"}
_TIMEOUT = httpx.Timeout(None, connect=10.0)
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


async def _stream(parts: tuple[bytes | memoryview, ...]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part if isinstance(part, bytes) else bytes(part)  # as the service does


class AdapterRequestError(RuntimeError):
    """A provision request failed, or was not answered with a COMPLETED status."""


class Pool:
    """AsyncClients of at most ``shard_size`` connections; a request goes to the least busy.

    httpx keeps idle connections 5 s and uvicorn (the mock) closes them after 5 s, so a request
    can meet a connection the server is closing at that moment; such a request is sent once
    more, and counted in ``retries``.
    """

    def __init__(
        self, base_url: str, *, capacity: int, shard_size: int, loop_sockets: bool = False
    ) -> None:
        shards = math.ceil(capacity / shard_size)
        size = math.ceil(capacity / shards)
        # The same pool settings as the service (provisioner.adapters.pool).
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=2.0
        )
        self._clients = [
            httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT, limits=limits)
            for _ in range(shards)
        ]
        if loop_sockets:
            for client in self._clients:
                use_loop_sockets(client, limits)
        self._busy = [0] * shards
        self.retries = 0

    async def provision(self, body: tuple[bytes | memoryview, ...]) -> dict[str, Any]:
        """POST the body streamed from its parts, with its Content-Length, as the service does."""
        index = self._busy.index(min(self._busy))
        self._busy[index] += 1
        headers = {**_HEADERS, "content-length": str(sum(len(part) for part in body))}
        try:
            try:
                response = await self._clients[index].post(
                    "/v1/provision", content=_stream(body), headers=headers
                )
            except _DROPPED:
                self.retries += 1
                response = await self._clients[index].post(
                    "/v1/provision", content=_stream(body), headers=headers
                )
        finally:
            self._busy[index] -= 1
        answer = json.loads(response.content) if response.status_code == 200 else {}
        if answer.get("status") != "COMPLETED":
            raise AdapterRequestError(f"{response.status_code}: {response.text[:500]}")
        info = answer.get("info") or {}
        # What the service sends dependents of this component (dependency info).
        return {
            "publicInfo": dict(info.get("publicInfo") or {}),
            "privateInfo": dict(info.get("privateInfo") or {}),
        }

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


async def deploy(pool: Pool, document: dict[str, Any]) -> float:
    """Provision every component eagerly; the seconds it took, serialisation included."""
    started = time.perf_counter()
    payloads = FirstDeployPayloads(document)
    components = document["components"]
    successors: dict[str, list[str]] = {c["id"]: [] for c in components}
    waiting = {c["id"]: len(c["dependsOn"]) for c in components}
    for component in components:
        for dependency in component["dependsOn"]:
            successors[dependency].append(component["id"])
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    infos: dict[str, dict[str, Any]] = {}
    depends_on = {c["id"]: c["dependsOn"] for c in components}

    async with asyncio.TaskGroup() as group:

        async def provision(own_id: str) -> None:
            dependencies = {dep: infos[dep] for dep in depends_on[own_id]}
            async with slots:
                infos[own_id] = await pool.provision(payloads.body(own_id, dependencies))
            for successor in successors[own_id]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    group.create_task(provision(successor))

        for own_id, count in waiting.items():
            if count == 0:
                group.create_task(provision(own_id))
    return time.perf_counter() - started


def fresh_document(spec: Shape) -> dict[str, Any]:
    """A new unit of this shape, as the service would read it from its YAML."""
    unit_id = f"urn:dmb:dp:bench:{spec.name}-base{uuid.uuid4().hex[:10]}:0"
    document: dict[str, Any] = load_yaml(descriptor_yaml(descriptor(spec, unit_id))).value
    return document


async def measure(
    pool: Pool, spec: Shape, repeat: int, *, mock_pid: int | None
) -> list[dict[str, float]]:
    """Makespan, own CPU and (given its pid) the mock adapter's CPU of each repetition."""
    runs = []
    for _ in range(repeat):
        document = fresh_document(spec)
        cpu, mock_cpu = time.process_time(), cpu_seconds(mock_pid) if mock_pid else 0.0
        makespan = await deploy(pool, document)
        runs.append(
            {
                "makespan": makespan,
                "cpu": time.process_time() - cpu,
                "mock_cpu": cpu_seconds(mock_pid) - mock_cpu if mock_pid else 0.0,
            }
        )
    return runs


async def serve(args: argparse.Namespace) -> None:
    """One deploy per workload name read on stdin, one JSON line out per deploy."""
    pool = Pool(args.adapter_url, capacity=MAX_IN_FLIGHT, shard_size=SHARD_SIZE)
    loop = asyncio.get_running_loop()
    try:
        await measure(pool, shape("warmup"), 2, mock_pid=None)
        print(json.dumps({"ready": True}), flush=True)
        while name := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            if name == "peak":
                answer: dict[str, Any] = {"peak_memory_bytes": _peak_memory_bytes()}
            else:
                [answer] = await _labelled(
                    name, measure(pool, shape(name), 1, mock_pid=args.mock_pid)
                )
                answer["retries"] = pool.retries
            print(json.dumps(answer), flush=True)
    finally:
        await pool.aclose()


def _peak_memory_bytes() -> int:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sharded = Pool(args.adapter_url, capacity=MAX_IN_FLIGHT, shard_size=SHARD_SIZE)
    naive = Pool(args.adapter_url, capacity=MAX_IN_FLIGHT, shard_size=MAX_IN_FLIGHT)
    on_loop = Pool(
        args.adapter_url, capacity=MAX_IN_FLIGHT, shard_size=SHARD_SIZE, loop_sockets=True
    )
    pools = (sharded, naive, on_loop)
    result: dict[str, Any] = {"workloads": {}, "naive_wide": [], "loop_sockets": {}}
    mock_pid = args.mock_pid
    workloads = args.workloads.split(",")
    try:
        for pool in pools:
            await measure(pool, shape("warmup"), 2, mock_pid=None)
        for name in workloads:
            result["workloads"][name] = await _labelled(
                name, measure(sharded, shape(name), args.repeat, mock_pid=mock_pid)
            )
        # The peak over the main pool's runs.
        result["peak_memory_bytes"] = _peak_memory_bytes()
        for name in workloads if args.loop_sockets_repeat else ():
            result["loop_sockets"][name] = await _labelled(
                f"{name} on loop sockets",
                measure(on_loop, shape(name), args.loop_sockets_repeat, mock_pid=mock_pid),
            )
        if args.naive_repeat:
            result["naive_wide"] = await _labelled(
                "naive wide", measure(naive, shape("wide"), args.naive_repeat, mock_pid=mock_pid)
            )
        result["retries"] = sum(pool.retries for pool in pools)
    finally:
        for pool in pools:
            await pool.aclose()
    return result


async def _labelled(label: str, runs: Awaitable[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Name the workload in the error."""
    try:
        return await runs
    except Exception as exc:
        causes = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        raise AdapterRequestError(f"{label}: {', '.join(repr(c) for c in causes[:3])}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter-url", required=True)
    parser.add_argument("--workloads", default="chain,wide,layered,large")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-repeat", type=int, default=0, help="naive pool on wide")
    parser.add_argument(
        "--loop-sockets-repeat", type=int, default=0, help="each workload on loop-socket pools"
    )
    parser.add_argument("--mock-pid", type=int, help="to account the mock adapter's CPU time")
    parser.add_argument("--serve", action="store_true", help="deploy what stdin names, in turns")
    args = parser.parse_args(argv)
    try:
        if args.serve:
            uvloop.run(serve(args))
            return 0
        result = uvloop.run(main_async(args))
    except AdapterRequestError as exc:
        traceback.print_exc()
        print(f"baseline failed: {exc}", file=sys.stderr)  # last: the caller shows the tail
        return 1
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
