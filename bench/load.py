"""Load on replicas: several replicas of the service on one PostgreSQL, many deployments at once.

    python bench/load.py [--replicas 3] [--units 200] [--latency-ms 20]

Starts the mock Tech Adapter, a throwaway PostgreSQL database and N `provisioner serve`
replicas; submits every deployment at once (round-robin over the replicas), each a unit of 10
components (1 -> 3 -> 3 -> 3); reads release statuses from random replicas the whole time.
Then checks that every operation succeeded, that the adapter saw each component provisioned
exactly once and that nothing is left running, and prints the components provisioned per
second, the p50/p99 of the release-status reads during the load, and how the operations were
spread over the replicas. Exit code 1 if a check fails (targets are reported, not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from measure import cpu_seconds
from servers import ChildServer, mock_adapter, postgres_database, postgres_version, service
from workloads import ENVIRONMENT, TEMPLATE_ID

TARGET_COMPONENTS_PER_SECOND = 250.0
TARGET_P99_SECONDS = 0.2
_FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def descriptor(index: int, latency_ms: float) -> dict[str, Any]:
    """A 10-component unit: one root, then three layers of three."""
    unit_id = f"urn:dmb:dp:load:unit-{index:04d}:0"

    def component(name: str, depends_on: list[str]) -> dict[str, Any]:
        return {
            "id": f"{unit_id}:{name}",
            "name": name,
            "kind": "workload",
            "version": "1.0.0",
            "infrastructureTemplateId": TEMPLATE_ID,
            "dependsOn": [f"{unit_id}:{dep}" for dep in depends_on],
            "specific": {"mock": {"latencyMs": latency_ms}},
        }

    components = [component("c0", [])]
    for layer in range(3):
        for column in range(3):
            parent = "c0" if layer == 0 else f"c{1 + (layer - 1) * 3 + column}"
            components.append(component(f"c{1 + layer * 3 + column}", [parent]))
    return {
        "id": unit_id,
        "name": f"unit-{index}",
        "version": "1.0.0",
        "environment": ENVIRONMENT,
        "components": components,
    }


def read_statuses(
    urls: list[str],
    unit_ids: list[str],
    submitted: Any,
    stop: Any,
    results: Any,
    concurrency: int,
) -> None:
    """In its own process (other users, not this script's event loop): read the release
    status of random submitted units from random replicas until told to stop; send back the
    latencies and the number of failed reads."""

    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def loop() -> None:
                nonlocal errors
                while not stop.is_set():
                    ready = [i for i in range(len(unit_ids)) if submitted[i]]
                    if not ready:
                        await asyncio.sleep(0.01)
                        continue
                    unit = unit_ids[random.choice(ready)]
                    started = time.perf_counter()
                    response = await client.get(
                        f"{random.choice(urls)}/v1/deployment-units/{unit}/environments/"
                        f"{ENVIRONMENT}"
                    )
                    latencies.append(time.perf_counter() - started)
                    errors += response.status_code != 200

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        return latencies, errors

    started = time.process_time()
    latencies, errors = asyncio.run(run())
    results.put((latencies, errors, time.process_time() - started))


class Readers:
    """The status readers' process and what it measured."""

    def __init__(self, urls: list[str], unit_ids: list[str], concurrency: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.submitted = context.Array("b", len(unit_ids), lock=False)
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=read_statuses,
            args=(urls, unit_ids, self.submitted, self._stop, self._results, concurrency),
            daemon=True,
        )
        self.latencies: list[float] = []
        self.errors = 0
        self.cpu = 0.0

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._stop.set()
        self.latencies, self.errors, self.cpu = self._results.get(timeout=120)
        self._process.join(30)


async def load(
    args: argparse.Namespace, replicas: list[ChildServer], mock: ChildServer, database_url: str
) -> int:
    urls = [replica.url for replica in replicas]
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        documents = [descriptor(i, args.latency_ms) for i in range(args.units)]
        await _warm_up(client, urls, args.latency_ms)
        readers = Readers(urls, [d["id"] for d in documents], args.readers)
        readers.start()
        cpu = CpuAccount(replicas, mock, await backend_pids(database_url))
        started = time.monotonic()
        operation_ids = await _submit_all(client, urls, documents, readers, args.concurrency)
        await _wait_for_all(client, urls[0], operation_ids)
        elapsed = time.monotonic() - started
        cpu.stop(await backend_pids(database_url))
        await asyncio.to_thread(readers.stop)
        cpu.parts["status readers (client)"] = readers.cpu
        operations = await asyncio.gather(
            *(_get(client, f"{urls[0]}/v1/operations/{op_id}") for op_id in operation_ids)
        )
        problems = await _check(client, mock.url, urls[0], documents, operations)
        spread = await _spread(client, urls[0], operation_ids)
    _report(args, operations, readers, elapsed, spread, problems)
    cpu.report(components=len(documents) * 10)
    return 1 if problems else 0


class CpuAccount:
    """CPU seconds spent during the load, per part: the replicas, PostgreSQL (every server
    process, with the backends that ended meanwhile), the mock adapter, this script (submitting
    and waiting) and the status readers. Less sensitive to other work on the machine than the
    wall-clock throughput: it says what a component costs, wherever it runs."""

    def __init__(self, replicas: list[ChildServer], mock: ChildServer, backends: list[int]) -> None:
        self._pids = {f"replica {replica.name[9:-1]}": replica.pid for replica in replicas}
        self._pids["mock adapter"] = mock.pid
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._backends = backends_cpu_seconds(backends)
        self._client = time.process_time()
        self.parts: dict[str, float] = {}

    def stop(self, backends: list[int]) -> None:
        for name, pid in self._pids.items():
            self.parts[name] = cpu_seconds(pid) - self._before[name]
        now = backends_cpu_seconds(backends)
        self.parts["PostgreSQL backends"] = sum(
            seconds - self._backends.get(pid, 0.0) for pid, seconds in now.items()
        )
        self.parts["load script (client)"] = time.process_time() - self._client

    def report(self, *, components: int) -> None:
        total = sum(self.parts.values())
        print(
            f"  CPU per component: {total / components * 1000:.2f} ms in all "
            f"({total:.1f} s for {components} components):"
        )
        for name, seconds in self.parts.items():
            print(f"    {name:<24}{seconds / components * 1000:7.2f} ms  ({seconds:6.2f} s)")


async def backend_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark's database."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
            return [int(pid) for pid in rows.scalars()]
    finally:
        await engine.dispose()


def backends_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each of those processes still running (on this machine)."""
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return seconds


async def _get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    response.raise_for_status()
    return response.json()


async def _warm_up(client: httpx.AsyncClient, urls: list[str], latency_ms: float) -> None:
    for index, url in enumerate(urls):
        document = descriptor(10_000 + index, latency_ms)
        response = await client.post(f"{url}/v1/deployments", json={"descriptor": document})
        response.raise_for_status()
        await _wait_for_all(client, url, [response.json()["id"]])


async def _submit_all(
    client: httpx.AsyncClient,
    urls: list[str],
    documents: list[dict[str, Any]],
    readers: Readers,
    concurrency: int,
) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    # Serialised before the first request, so that this script competes less for the CPU.
    bodies = [{"descriptor": yaml.safe_dump(d, sort_keys=False)} for d in documents]

    async def submit(index: int, document: dict[str, Any]) -> str:
        async with gate:
            response = await client.post(
                f"{urls[index % len(urls)]}/v1/deployments", json=bodies[index]
            )
        response.raise_for_status()
        readers.submitted[index] = 1
        operation_id: str = response.json()["id"]
        return operation_id

    return list(await asyncio.gather(*(submit(i, d) for i, d in enumerate(documents))))


async def _wait_for_all(client: httpx.AsyncClient, url: str, operation_ids: list[str]) -> None:
    remaining = set(operation_ids)
    deadline = time.monotonic() + 600
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} operations did not finish")
        for status in ("PENDING", "RUNNING"):
            page = await _get(client, f"{url}/v1/operations", status=status, limit=1)
            if page["items"]:
                break
        else:
            return
        await asyncio.sleep(0.2)


async def _check(
    client: httpx.AsyncClient,
    mock_url: str,
    url: str,
    documents: list[dict[str, Any]],
    operations: list[dict[str, Any]],
) -> list[str]:
    problems = [
        f"operation {op['id']} ended {op['status']}"
        for op in operations
        if op["status"] != "SUCCEEDED"
    ]
    seen = await _get(client, f"{mock_url}/mock/components")
    for document in documents:
        for component in document["components"]:
            count = seen.get(component["id"], {}).get("provisionCount", 0)
            if count != 1:
                problems.append(f"{component['id']} provisioned {count} times")
    for status in ("PENDING", "RUNNING"):
        page = await _get(client, f"{url}/v1/operations", status=status, limit=5)
        problems += [f"operation {item['id']} left {status}" for item in page["items"]]
    return problems


async def _spread(client: httpx.AsyncClient, url: str, operation_ids: list[str]) -> dict[str, int]:
    """How many of the operations each replica claimed (first claim)."""
    counts: dict[str, int] = {}
    for operation_id in operation_ids:
        events = (await _get(client, f"{url}/v1/operations/{operation_id}/events", limit=3))[
            "items"
        ]
        owner = next(
            e["detail"]["owner"].split("/")[0]
            for e in events
            if e["componentId"] is None and e["newStatus"] == "RUNNING"
        )
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def _report(
    args: argparse.Namespace,
    operations: list[dict[str, Any]],
    readers: Readers,
    elapsed: float,
    spread: dict[str, int],
    problems: list[str],
) -> None:
    first = min(datetime.fromisoformat(op["createdAt"]) for op in operations)
    last = max(datetime.fromisoformat(op["finishedAt"]) for op in operations if op["finishedAt"])
    window = (last - first).total_seconds()
    components = sum(len(op["tasks"]) - 1 for op in operations)  # less each system step
    rate = components / window
    latencies = sorted(readers.latencies)
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    print(
        f"{args.replicas} replicas on PostgreSQL, {args.units} deployments of 10 components, "
        f"{args.latency_ms:g} ms adapter latency, submitted {args.concurrency} at a time"
    )
    print(
        f"  all operations done in {elapsed:.2f} s (first created -> last finished: {window:.2f} s)"
    )
    rate_ok = "PASS" if rate >= TARGET_COMPONENTS_PER_SECOND else "FAIL"
    print(
        f"  throughput: {rate:.0f} components provisioned per second "
        f"(target >= {TARGET_COMPONENTS_PER_SECOND:g}): {rate_ok}"
    )
    read_ok = "PASS" if p99 < TARGET_P99_SECONDS else "FAIL"
    print(
        f"  release-status reads during the load: {len(latencies)} reads, p50 "
        f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (target < {TARGET_P99_SECONDS * 1000:g} "
        f"ms): {read_ok}; errors: {readers.errors}"
    )
    print(f"  operations claimed per replica: {dict(sorted(spread.items()))}")
    if problems:
        print(f"  CHECKS FAILED ({len(problems)}):")
        for problem in problems[:20]:
            print(f"    - {problem}")
    else:
        print(
            "  checks: every operation SUCCEEDED, every component provisioned exactly once "
            "(the adapter's own count), nothing left PENDING or RUNNING"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=200, help="submissions in flight")
    parser.add_argument("--readers", type=int, default=4, help="concurrent status readers")
    args = parser.parse_args()
    if postgres_version() is None:
        print("PostgreSQL is not reachable at 127.0.0.1:5432; this benchmark needs it")
        return 2
    work = Path(tempfile.mkdtemp(prefix="provisioner-load-"))
    with ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        mock = stack.enter_context(mock_adapter(work))
        replicas = [
            stack.enter_context(
                service(
                    work, database_url=url, adapter_url=mock.url, label=f"r{i}", replica_id=f"r{i}"
                )
            )
            for i in range(args.replicas)
        ]
        return asyncio.run(load(args, replicas, mock, url))


if __name__ == "__main__":
    sys.exit(main())
