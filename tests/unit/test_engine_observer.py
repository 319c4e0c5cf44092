"""What the engine reports through its observer port: operations started (or taken over) and
finished, task durations per adapter, timeouts, writes refused by the fence."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from provisioner.domain.status import OperationStatus, TaskAction, TaskStatus
from provisioner.engine.ports import ClaimedOperation, Fence
from provisioner.engine.recorder import Recorder
from provisioner.engine.runner import OperationRunner
from provisioner.engine.slots import Slots
from provisioner.engine.worker import Worker, WorkerConfig
from tests.support import component, unit, wait_until
from tests.unit.fakes import (
    FakeAdapters,
    FakeDirectory,
    FakeStore,
    RecordingObserver,
    Script,
    claimed_deploy,
    now,
)
from tests.unit.test_recorder import write

UNIT = "urn:dmb:dp:test:observer:0"


async def run(
    claimed: ClaimedOperation,
    observer: RecordingObserver,
    *,
    scripts: dict[str, Script] | None = None,
    directory: FakeDirectory | None = None,
) -> OperationStatus | None:
    recorder = Recorder(FakeStore(), lease_seconds=30, observer=observer)
    recorder.start()
    runner = OperationRunner(
        claimed,
        adapters=FakeAdapters(scripts),
        directory=directory or FakeDirectory(),
        recorder=recorder,
        slots=Slots(8),
        clock=now,
        observer=observer,
    )
    try:
        return await runner.run()
    finally:
        await recorder.close()


async def test_each_task_s_call_and_the_operation_s_end_are_reported() -> None:
    """One duration per adapter call, with its template, action and outcome; then the end."""
    observer = RecordingObserver()
    claimed = claimed_deploy(
        unit(UNIT, [component("a", template="t-a"), component("b", template="t-b")])
    )
    status = await run(claimed, observer, scripts={"b": Script(fail=True)})
    assert status is OperationStatus.FAILED
    tasks = sorted(observer.of("task"))
    assert [item[:3] for item in tasks] == [
        ("t-a", TaskAction.PROVISION, TaskStatus.SUCCEEDED),
        ("t-b", TaskAction.PROVISION, TaskStatus.FAILED),
    ]
    assert all(item[3] >= 0 for item in tasks)
    assert observer.of("finished") == [(claimed.header.id, OperationStatus.FAILED)]


async def test_a_call_past_its_adapter_s_time_limit_is_reported_as_a_timeout() -> None:
    observer = RecordingObserver()
    claimed = claimed_deploy(unit(UNIT, [component("slow", template="t-slow")]))
    status = await run(
        claimed,
        observer,
        scripts={"slow": Script(gate=asyncio.Event())},  # never answers
        directory=FakeDirectory(timeouts={"t-slow": 0.05}),
    )
    assert status is OperationStatus.FAILED
    assert observer.of("error") == [("t-slow", "timeout", None)]


async def test_writes_refused_by_the_fence_are_reported() -> None:
    store = FakeStore()
    store.lost = {"op-lost"}
    observer = RecordingObserver()
    recorder = Recorder(store, lease_seconds=30, observer=observer)
    recorder.start()
    results = await asyncio.gather(
        recorder.write(write("op-lost", "a")),
        recorder.write(write("op-lost", "b")),
        recorder.write(write("op-ok", "c")),
        return_exceptions=True,
    )
    await recorder.close()
    assert sum(isinstance(result, Exception) for result in results) == 2
    assert sum(count for (count,) in observer.of("fenced")) == 2


class _ClaimingStore(FakeStore):
    """Hands out the given operations on the first claim."""

    def __init__(self, claimed: list[ClaimedOperation]) -> None:
        super().__init__()
        self._claimable = claimed

    async def claim(self, **_: Any) -> list[ClaimedOperation]:
        taken, self._claimable = self._claimable, []
        return taken

    async def renew_leases(self, fences: Sequence[Fence], **_: Any) -> tuple[set[str], set[str]]:
        return set(), set()


async def test_a_claim_is_reported_as_a_start_or_as_a_takeover() -> None:
    """The first claim of an operation starts it; a later one (its fence past 1) takes over
    what another owner left."""
    fresh = claimed_deploy(unit(UNIT, [component("a")]), operation_id="op-fresh")
    left = claimed_deploy(unit(f"{UNIT}-2", [component("b")]), operation_id="op-left")
    left = replace(left, fence=Fence("op-left", 3))
    observer = RecordingObserver()
    worker = Worker(
        store=_ClaimingStore([fresh, left]),
        adapters=FakeAdapters(),
        directory=FakeDirectory(),
        config=WorkerConfig(replica_id="r", claim_interval_seconds=0.05),
        observer=observer,
    )
    worker.start()
    try:

        async def both_finished() -> bool:
            return len(observer.of("finished")) == 2

        await wait_until(both_finished)
    finally:
        await worker.stop(grace_seconds=1)
    assert sorted(observer.of("started")) == [("op-fresh", False), ("op-left", True)]
