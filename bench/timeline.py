"""Where one workload's makespan and CPU go: the service's threads and a deploy's phases.

    .venv/bin/python bench/timeline.py [--workload wide] [--repeat 8] [--db sqlite|postgres]

Starts the mock adapter and ``provisioner serve`` as ``bench/run.py`` does, deploys the workload
``--repeat`` times and prints, as medians over the deploys:

- the CPU of each of the service's threads per deploy (``/proc/<pid>/task/*/schedstat``): the
  main thread is the event loop (API, engine, adapter client); on SQLite the next are the
  writer thread and the offload thread;
- the phases of a deploy, from the timestamps the API shows: from ``createdAt`` to the claim
  (``startedAt``), to the first adapter call, the first and last task ends, the operation's
  end; and the slot hand-off, from a task's end to the start of the task that took its slot
  (the 65th call onwards: the first 64 took free slots; it means something where tasks queue
  for slots, as in ``wide``). A start is stamped when the write recording it is made: its
  call follows once that write has committed.

Linux only (it reads ``/proc``). The figures are for finding where time goes, not for comparing
with targets: ``bench/run.py`` measures those against the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from measure import deploy, instant, submission
from run import database_url, warm_up
from servers import mock_adapter, service
from workloads import MAX_IN_FLIGHT, NAMES, shape


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU so far, per thread of ``pid``."""
    spent = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            spent[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return spent


def phases(operation: dict[str, Any]) -> dict[str, float]:
    """Seconds from the operation's ``createdAt`` to each milestone of its run."""
    created = instant(operation["createdAt"])
    # The tasks that called an adapter (the system step of a unit without one calls none).
    called = [task for task in operation["tasks"] if task["infrastructureTemplateId"]]
    starts = sorted(instant(task["startedAt"]) - created for task in called)
    ends = sorted(instant(task["finishedAt"]) - created for task in operation["tasks"])
    called_ends = sorted(instant(task["finishedAt"]) - created for task in called)
    handoffs = [
        starts[index] - called_ends[index - MAX_IN_FLIGHT]
        for index in range(MAX_IN_FLIGHT, len(starts))
    ]
    return {
        "claimed": instant(operation["startedAt"]) - created,
        "first call": starts[0],
        "first task end": ends[0],
        "last task end": ends[-1],
        "operation end": instant(operation["finishedAt"]) - created,
        **({"slot hand-off": statistics.median(handoffs)} if handoffs else {}),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="wide", choices=NAMES)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, mock_adapter(Path(tmp)) as mock:
        workdir = Path(tmp)
        with (
            database_url(args.db, workdir) as url,
            service(workdir, database_url=url, adapter_url=mock.url, label=args.db) as server,
            httpx.Client(base_url=server.url, timeout=300) as client,
        ):
            for problem in warm_up(client, server, mock):
                print(f"warning: the service's requests differ from the baseline's: {problem}")
            cpu: dict[int, list[float]] = {}
            timeline: list[dict[str, float]] = []
            makespans = []
            for item in [submission(shape(args.workload)) for _ in range(args.repeat)]:
                before = thread_cpu_ns(server.pid)
                run = deploy(client, item, service_pid=server.pid, mock_pid=mock.pid)
                after = thread_cpu_ns(server.pid)
                for tid, spent in after.items():
                    cpu.setdefault(tid, []).append((spent - before.get(tid, 0)) / 1e6)
                makespans.append(run.makespan)
                timeline.append(phases(client.get(f"/v1/operations/{run.operation_id}").json()))
            print(f"{args.workload} on {args.db}, median of {args.repeat} deploys")
            print(f"  makespan {statistics.median(makespans) * 1000:8.1f} ms")
            for name in timeline[0]:
                median = statistics.median(deploy_phases[name] for deploy_phases in timeline)
                since = "" if name == "slot hand-off" else " after createdAt"
                print(f"  {name:<15} {median * 1000:8.1f} ms{since}")
            print("  service CPU per deploy, per thread:")
            ranked = sorted(cpu.items(), key=lambda item: -statistics.median(item[1]))
            for tid, spent in ranked:
                if statistics.median(spent) < 1.0:
                    continue
                label = "main thread (event loop)" if tid == server.pid else f"thread {tid}"
                print(f"    {label:<26} {statistics.median(spent):8.1f} ms")


if __name__ == "__main__":
    main()
