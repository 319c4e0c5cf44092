"""Benchmark the service against the mock Tech Adapter and a plain asyncio + httpx baseline.

    .venv/bin/python bench/run.py [--db sqlite|postgres|both] [--workloads chain,wide,...]
                                  [--repeat N] [--json PATH]

Starts the mock adapter and the baseline in its own process, then for each database starts
``provisioner serve``, warms it up, checks that it sends what the baseline sends, and deploys
each workload ``--repeat`` times in turns with the baseline (one deploy of each, in alternating
order), so that both are measured on the machine as it is then (its speed drifts by several
per cent within minutes). Prints one table per database. Exit code 0 whatever the
figures; 1 only when something broke (a deploy failed, a server did not start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from measure import DeployFailedError, DeployRun, deploy, submission
from payloads import FirstDeployPayloads, parity_problems
from provisioner.domain.documents import load_yaml
from report import BaselineRun, WorkloadResult, as_json, table
from servers import (
    POSTGRES_ADMIN_URL,
    ChildServer,
    ServerFailedError,
    mock_adapter,
    peak_memory_bytes,
    postgres_database,
    postgres_version,
    service,
)
from workloads import NAMES, floor, shape

BENCH = Path(__file__).resolve().parent
BUSY_SHARE = 0.2  # CPU share already in use before the start above which figures are skewed
_TITLES = {
    "sqlite": "SQLite (sqlite+aiosqlite, a file in a temp dir)",
    "postgres": "PostgreSQL (postgresql+asyncpg, a throwaway database)",
}


class BenchmarkBrokenError(RuntimeError):
    """The benchmark could not measure (as opposed to: measured figures that miss targets)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--workloads", default=",".join(NAMES))
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median counts")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    unknown = set(args.workloads.split(",")) - set(NAMES)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "loadAverage": [round(value, 2) for value in os.getloadavg()],
        "busyBeforeStart": round(busy_share(), 3),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvloop": version("uvloop"),
        "httpx": version("httpx"),
        "httpcore": version("httpcore"),
        "uvicorn": version("uvicorn"),
    }


def busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs in use (by anything) over ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)


def databases(choice: str | None) -> tuple[list[str], str | None]:
    """The databases to run on, and the PostgreSQL version (None when not reachable)."""
    pg_version = postgres_version() if choice in (None, "both", "postgres") else None
    if choice == "postgres" and pg_version is None:
        raise BenchmarkBrokenError(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    if choice is None:
        if pg_version is None:
            print(f"note: PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}; SQLite only")
            return ["sqlite"], None
        return ["sqlite", "postgres"], pg_version
    return (["sqlite", "postgres"] if choice == "both" else [choice]), pg_version


def run_baseline(mock: ChildServer, workloads: list[str], repeat: int) -> dict[str, Any]:
    """The side notes' baselines in their own process: the naive pool's makespans, and each
    workload's over the service's network layer."""
    argv = [
        sys.executable,
        str(BENCH / "baseline.py"),
        f"--adapter-url={mock.url}",
        f"--workloads={','.join(workloads)}",
        "--repeat=0",
        f"--naive-repeat={repeat if 'wide' in workloads else 0}",
        f"--loop-sockets-repeat={repeat}",
        f"--mock-pid={mock.pid}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkBrokenError(f"the baseline failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class Baseline:
    """The baseline in its own process (``baseline.py --serve``), deploying on request."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self.retries = 0

    def _ask(self, line: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise BenchmarkBrokenError(f"the baseline failed: {self.error()}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def error(self) -> str:
        """The end of what the process wrote on stderr, once it has exited."""
        self._process.wait(timeout=30)
        assert self._process.stderr is not None
        return self._process.stderr.read()[-3000:]

    def deploy(self, workload: str) -> BaselineRun:
        answer = self._ask(workload)
        self.retries = answer.pop("retries")
        return BaselineRun(**answer)

    def peak_memory_bytes(self) -> int:
        return int(self._ask("peak")["peak_memory_bytes"])


@contextmanager
def baseline_process(mock: ChildServer) -> Iterator[Baseline]:
    argv = [
        sys.executable,
        str(BENCH / "baseline.py"),
        f"--adapter-url={mock.url}",
        f"--mock-pid={mock.pid}",
        "--serve",
    ]
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    baseline = Baseline(process)
    try:
        assert process.stdout is not None
        if not process.stdout.readline():  # {"ready": true} once warmed up
            raise BenchmarkBrokenError(f"the baseline did not start: {baseline.error()}")
        yield baseline
    finally:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def database_url(database: str, workdir: Path) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    with postgres_database() as url:
        yield url


def warm_up(client: httpx.Client, server: ChildServer, mock: ChildServer) -> list[str]:
    """Two small deploys; then compare one request the mock received with the baseline's."""
    items = [submission(shape("warmup"), tag="warm") for _ in range(2)]
    for item in items:
        deploy(client, item, service_pid=server.pid, mock_pid=mock.pid)
    received = httpx.get(f"{mock.url}/mock/requests").json()["requests"]
    text = json.loads(items[-1].body)["descriptor"]
    prefix = items[-1].unit_id.removesuffix(":0")
    sample = next((r for r in received if r["componentId"].startswith(prefix)), None)
    if sample is None:
        return ["the mock adapter kept no request of the warm-up deploy"]
    return parity_problems(FirstDeployPayloads(load_yaml(text).value), sample)


def run_database(
    database: str,
    workloads: list[str],
    *,
    repeat: int,
    mock: ChildServer,
    baseline: Baseline,
    workdir: Path,
) -> tuple[list[WorkloadResult], list[str]]:
    results = []
    with (
        database_url(database, workdir) as url,
        service(workdir, database_url=url, adapter_url=mock.url, label=database) as server,
        httpx.Client(base_url=server.url, timeout=300) as client,
    ):
        parity = warm_up(client, server, mock)
        for name in workloads:
            spec = shape(name)
            items = [submission(spec) for _ in range(repeat)]
            result = WorkloadResult(
                workload=name,
                components=len(spec.nodes),
                floor=floor(spec),
                descriptor_bytes=items[0].descriptor_bytes,
            )
            for number, item in enumerate(items):
                # In turns, the order flipped every other time (ABBA): whatever one leaves
                # behind for the next (a collection, connections closing) falls on both alike.
                if number % 2:
                    result.runs.append(
                        deploy(client, item, service_pid=server.pid, mock_pid=mock.pid)
                    )
                    result.baseline.append(baseline.deploy(name))
                else:
                    result.baseline.append(baseline.deploy(name))
                    result.runs.append(
                        deploy(client, item, service_pid=server.pid, mock_pid=mock.pid)
                    )
                server.check_alive()
            if name == "large":
                result.peak_memory_bytes = peak_memory_bytes(server.pid)
                result.baseline_peak_memory_bytes = baseline.peak_memory_bytes()
            results.append(result)
            print(f"  {database}: {name} done ({_brief(result.runs)})", flush=True)
    return results, parity


def _brief(runs: list[DeployRun]) -> str:
    return ", ".join(f"{run.makespan:.3f} s" for run in runs)


def print_header(info: dict[str, Any], pg_version: str | None, repeat: int) -> None:
    print(f"provisioner benchmark — {info['date']}")
    print(
        f"machine: {info['cores']} cores, {info['busyBeforeStart']:.0%} busy before the start, "
        f"load average {info['loadAverage']}, {info['platform']}"
    )
    if info["busyBeforeStart"] > BUSY_SHARE:
        print("warning: other work is using the CPUs; expect noisy figures")
    print(
        f"python {info['python']}, uvloop {info['uvloop']}, httpx {info['httpx']}, "
        f"httpcore {info['httpcore']}, uvicorn {info['uvicorn']}"
        + (f", PostgreSQL {pg_version}" if pg_version else "")
    )
    print(
        f"median of {repeat} runs; makespan = finishedAt - createdAt (server clock); floor = "
        "critical path of adapter latencies at <= 64 in flight; ovh/step = (makespan - floor) / "
        "adapter steps on the critical path; baseline = plain asyncio + httpx (uvloop, 8 pools "
        "of 8 connections), same mock adapter, same request bodies\n",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = args.workloads.split(",")
    info = machine()
    try:
        chosen, pg_version = databases(args.db)
        print_header(info, pg_version, args.repeat)
        output = measure_all(chosen, workloads, args.repeat)
    except (BenchmarkBrokenError, ServerFailedError, DeployFailedError) as exc:
        print(f"benchmark broken: {exc}", file=sys.stderr)
        return 1
    if args.json:
        output.update(machine=info, postgresVersion=pg_version, repeat=args.repeat)
        args.json.write_text(json.dumps(output, indent=2))
        print(f"results written to {args.json}")
    return 0


def measure_all(chosen: list[str], workloads: list[str], repeat: int) -> dict[str, Any]:
    """The side notes' baselines first, then the service on each database, its deploys in
    turns with the baseline's, all against one mock adapter."""
    output: dict[str, Any] = {"databases": {}}
    tables = []
    with (
        tempfile.TemporaryDirectory(prefix="provisioner-bench-") as tmp,
        mock_adapter(Path(tmp)) as mock,
    ):
        print("baseline: running the side notes' variants", flush=True)
        side = run_baseline(mock, workloads, repeat)
        output.update(
            naiveWideSeconds=[run["makespan"] for run in side["naive_wide"]],
            loopSocketsBaselineSeconds={
                name: [run["makespan"] for run in runs]
                for name, runs in side["loop_sockets"].items()
            },
        )
        with baseline_process(mock) as baseline:
            for database in chosen:
                results, parity = run_database(
                    database,
                    workloads,
                    repeat=repeat,
                    mock=mock,
                    baseline=baseline,
                    workdir=Path(tmp),
                )
                tables.append(table(database, _TITLES[database], results) + _parity_line(parity))
                output["databases"][database] = {
                    "results": [as_json(result, database) for result in results],
                    "payloadParityProblems": parity,
                }
        output["baselineRetries"] = side["retries"] + baseline.retries
    print_results(tables, output)
    return output


def _parity_line(parity: list[str]) -> str:
    if parity:
        return f"\n  WARNING: request bodies differ from the baseline's: {'; '.join(parity)}"
    return "\n  request bodies: the service's and the baseline's are identical"


def print_results(tables: list[str], output: dict[str, Any]) -> None:
    print()
    print("\n\n".join(tables))
    naive: list[float] = output["naiveWideSeconds"]
    if naive:
        print(
            "\nside note: naive baseline (one AsyncClient, max 64 connections) on wide: "
            f"{statistics.median(naive):.3f} s median ({', '.join(f'{v:.3f}' for v in naive)} s)"
        )
    print_loop_sockets(output)
    if output["baselineRetries"]:
        print(
            f"note: the baseline resent {output['baselineRetries']} request(s) on a connection "
            "the mock adapter closed as it was reused"
        )


def print_loop_sockets(output: dict[str, Any]) -> None:
    """The service's own overhead: its makespans against the baseline's on the same network
    layer as the service's HTTP client (``provisioner.adapters.network``)."""
    baseline: dict[str, list[float]] = output["loopSocketsBaselineSeconds"]
    if not baseline:
        return
    print(
        "\nside note: baseline on the service's network layer (provisioner.adapters.network "
        "instead of httpcore's anyio one), median; the service's makespan against it:"
    )
    for database, measured in output["databases"].items():
        ratios = []
        for result in measured["results"]:
            runs = baseline.get(result["workload"])
            if runs:
                reference = statistics.median(runs)
                ratio = result["makespanSeconds"] / reference
                ratios.append(f"{result['workload']} {reference:.3f} s ({ratio:.3f})")
        print(f"  {database}: {', '.join(ratios)}")


if __name__ == "__main__":
    raise SystemExit(main())
