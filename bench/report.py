"""Results, targets and the printed tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from measure import DeployRun
from workloads import Floor

MiB = 1024 * 1024
LARGE_POST_SECONDS = 2.0
LARGE_PEAK_BYTES = 300 * MiB
# The targets of the "make room" issue: the ratio to the baseline measured in the same run.
_RATIO_TARGETS = {
    ("chain", "sqlite"): 1.10,
    ("wide", "sqlite"): 1.15,
    ("layered", "sqlite"): 1.10,
    "chain": 1.20,
    "wide": 1.20,
    "layered": 1.20,
}


@dataclass(frozen=True, slots=True)
class BaselineRun:
    makespan: float
    cpu: float
    mock_cpu: float


@dataclass(slots=True)
class WorkloadResult:
    """Every figure of one workload on one database."""

    workload: str
    components: int
    floor: Floor
    descriptor_bytes: int
    runs: list[DeployRun] = field(default_factory=list)
    baseline: list[BaselineRun] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    baseline_peak_memory_bytes: int | None = None

    @property
    def makespan(self) -> float:
        return statistics.median(run.makespan for run in self.runs)

    @property
    def baseline_makespan(self) -> float:
        return statistics.median(run.makespan for run in self.baseline)

    @property
    def ratio(self) -> float:
        return self.makespan / self.baseline_makespan

    @property
    def overhead_per_step(self) -> float:
        return (self.makespan - self.floor.seconds) / self.floor.steps

    @property
    def post_seconds(self) -> float:
        return statistics.median(run.post_seconds for run in self.runs)


def target(result: WorkloadResult, database: str) -> tuple[str, bool]:
    """The target's wording and whether it is met."""
    if result.workload == "large":
        peak = result.peak_memory_bytes or 0
        met = result.post_seconds <= LARGE_POST_SECONDS and peak < LARGE_PEAK_BYTES
        return f"POST<={LARGE_POST_SECONDS:g}s, peak<{LARGE_PEAK_BYTES // MiB}MiB", met
    limit = _RATIO_TARGETS.get((result.workload, database)) or _RATIO_TARGETS[result.workload]
    return f"ratio<={limit:g}", result.ratio <= limit


def table(database: str, title: str, results: list[WorkloadResult]) -> str:
    header = (
        f"{'workload':<9}{'comps':>6}{'makespan':>10}{'floor':>9}{'ovh/step':>10}"
        f"{'baseline':>10}{'ratio':>7}  {'target':<28}result"
    )
    lines = [title, header, "-" * len(header)]
    for result in results:
        wording, met = target(result, database)
        lines.append(
            f"{result.workload:<9}{result.components:>6}{result.makespan:>9.3f}s"
            f"{result.floor.seconds:>8.3f}s{result.overhead_per_step * 1000:>8.2f}ms"
            f"{result.baseline_makespan:>9.3f}s{result.ratio:>7.3f}  {wording:<28}"
            f"{'PASS' if met else 'FAIL'}"
        )
    lines.extend(_details(results))
    return "\n".join(lines)


def _details(results: list[WorkloadResult]) -> list[str]:
    lines = []
    for result in results:
        if result.workload == "large":
            posts = [run.post_seconds for run in result.runs]
            peak = (result.peak_memory_bytes or 0) / MiB
            base_peak = (result.baseline_peak_memory_bytes or 0) / MiB
            lines.append(
                f"  large: POST answered in {result.post_seconds:.3f} s (median; max "
                f"{max(posts):.3f} s); service peak RSS (VmHWM) {peak:.1f} MiB (baseline "
                f"process: {base_peak:.1f} MiB); descriptor {result.descriptor_bytes:,} bytes "
                f"({result.descriptor_bytes / MiB:.2f} MiB)"
            )
    lines.append("  CPU seconds per run (median): service+mock | baseline+mock")
    for result in results:
        service = statistics.median(run.service_cpu for run in result.runs)
        mock = statistics.median(run.mock_cpu for run in result.runs)
        base = statistics.median(run.cpu for run in result.baseline)
        base_mock = statistics.median(run.mock_cpu for run in result.baseline)
        lines.append(
            f"    {result.workload:<9}{service:6.2f} + {mock:5.2f}  |"
            f" {base:6.2f} + {base_mock:5.2f}"
        )
    return lines


def as_json(result: WorkloadResult, database: str) -> dict[str, Any]:
    wording, met = target(result, database)
    return {
        "workload": result.workload,
        "components": result.components,
        "descriptorBytes": result.descriptor_bytes,
        "floorSeconds": result.floor.seconds,
        "criticalPathSteps": result.floor.steps,
        "makespanSeconds": result.makespan,
        "makespans": [run.makespan for run in result.runs],
        "overheadPerStepMs": result.overhead_per_step * 1000,
        "baselineSeconds": result.baseline_makespan,
        "baselineMakespans": [run.makespan for run in result.baseline],
        "ratio": result.ratio,
        "postSeconds": [run.post_seconds for run in result.runs],
        "peakMemoryBytes": result.peak_memory_bytes,
        "baselinePeakMemoryBytes": result.baseline_peak_memory_bytes,
        "serviceCpuSeconds": [run.service_cpu for run in result.runs],
        "mockCpuSeconds": [run.mock_cpu for run in result.runs],
        "baselineCpuSeconds": [run.cpu for run in result.baseline],
        "baselineMockCpuSeconds": [run.mock_cpu for run in result.baseline],
        "operationIds": [run.operation_id for run in result.runs],
        "target": wording,
        "met": met,
    }
