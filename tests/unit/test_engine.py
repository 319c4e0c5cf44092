"""The operation runner with in-memory fakes of its ports: scheduling, failure, concurrency,
resumption, fencing, cancel and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from provisioner.domain.status import ComponentStatus, OperationStatus, TaskStatus
from provisioner.engine.ports import ClaimedOperation, ComponentState, StateWrite
from provisioner.engine.recorder import Recorder
from provisioner.engine.runner import OperationRunner
from provisioner.engine.slots import Slots
from provisioner.errors import AdapterError
from tests.support import component, unit
from tests.unit.fakes import (
    FakeAdapters,
    FakeDirectory,
    FakeStore,
    Script,
    claimed_deploy,
    now,
)

UNIT = "urn:dmb:dp:test:engine:0"


class Harness:
    """A runner over fakes; ``run`` returns the final status."""

    def __init__(
        self,
        claimed: ClaimedOperation,
        *,
        scripts: dict[str, Script] | None = None,
        directory: FakeDirectory | None = None,
        slots: int = 64,
        timeout: float | None = None,
        validate_before_deploy: bool = True,
    ) -> None:
        self.store = FakeStore()
        self.adapters = FakeAdapters(scripts)
        self.recorder = Recorder(self.store, lease_seconds=30)
        self.claimed = claimed
        self.runner = OperationRunner(
            claimed,
            adapters=self.adapters,
            directory=directory or FakeDirectory(),
            recorder=self.recorder,
            slots=Slots(slots),
            clock=now,
            operation_timeout_seconds=timeout,
            validate_before_deploy=validate_before_deploy,
        )

    async def run(self) -> OperationStatus | None:
        self.recorder.start()
        try:
            return await self.runner.run()
        finally:
            await self.recorder.close()

    def task(self, component_id: str) -> Any:
        """The task as last written (as it was claimed, if never written)."""
        claimed = next(t for t in self.claimed.tasks if t.component_id == component_id)
        return self.store.tasks.get(component_id, claimed)

    def component(self, component_id: str) -> ComponentState:
        """The component as last written (as it was claimed, if never written)."""
        return self.store.components.get(component_id, self.claimed.components[component_id])


def deploy(*components: dict[str, Any], **extra: Any) -> ClaimedOperation:
    return claimed_deploy(unit(UNIT, list(components), **extra))


def as_left(claimed: ClaimedOperation, **changes: dict[str, Any]) -> ClaimedOperation:
    """``claimed`` as a previous run left it: ``changes`` per component id."""
    claimed.tasks = [replace(t, **changes.get(t.component_id, {})) for t in claimed.tasks]
    return claimed


async def test_a_task_starts_as_soon_as_its_own_dependencies_succeed() -> None:
    """D (after C) starts while A, unrelated to it, is still running."""
    gate_a = asyncio.Event()
    harness = Harness(
        deploy(
            component("a"),
            component("b", depends_on=["a"]),
            component("c"),
            component("d", depends_on=["c"]),
        ),
        scripts={"a": Script(gate=gate_a)},
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_started("d")
    assert "a" not in harness.adapters.finished
    assert "b" not in harness.adapters.started
    gate_a.set()
    assert await running is OperationStatus.SUCCEEDED
    assert harness.adapters.started.index("b") > harness.adapters.finished.index("a")


async def test_a_failure_skips_what_is_downstream_and_spares_independent_branches() -> None:
    """B after failed A is SKIPPED (never called); C, independent, succeeds; the operation fails."""
    harness = Harness(
        deploy(
            component("a"),
            component("b", depends_on=["a"]),
            component("c"),
            component("e", depends_on=["b"]),
        ),
        scripts={"a": Script(fail=True)},
    )
    assert await harness.run() is OperationStatus.FAILED
    assert harness.task("a").status is TaskStatus.FAILED
    assert harness.task("b").status is TaskStatus.SKIPPED
    assert harness.task("e").status is TaskStatus.SKIPPED
    assert harness.task("c").status is TaskStatus.SUCCEEDED
    assert "b" not in harness.adapters.started
    assert harness.component("a").status is ComponentStatus.CORRUPT
    assert harness.component("b").status is ComponentStatus.NOT_DEPLOYED
    assert harness.component("b").last_task_status is TaskStatus.SKIPPED


async def test_tasks_already_running_finish_and_are_recorded_when_another_fails() -> None:
    """A failure does not abandon a call in flight: it completes and is recorded SUCCEEDED."""
    gate = asyncio.Event()
    harness = Harness(
        deploy(component("slow"), component("broken")),
        scripts={"slow": Script(gate=gate), "broken": Script(fail=True)},
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_started("slow")
    await harness.adapters.until_finished("broken")
    gate.set()
    assert await running is OperationStatus.FAILED
    assert harness.task("slow").status is TaskStatus.SUCCEEDED
    assert harness.component("slow").status is ComponentStatus.DEPLOYED


async def test_the_global_limit_bounds_calls_in_flight() -> None:
    """With 2 slots, at most 2 of 6 independent calls run at once, and all complete."""
    harness = Harness(deploy(*(component(f"c{i}") for i in range(6))), slots=2)
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.max_in_flight == 2
    assert len(harness.adapters.finished) == 6


async def test_the_per_adapter_limit_bounds_only_that_adapter() -> None:
    """maxConcurrency 1 serialises one adapter's calls while another adapter's run together."""
    gate = asyncio.Event()
    scripts = {f"x{i}": Script(gate=gate) for i in range(3)} | {
        f"y{i}": Script(gate=gate) for i in range(3)
    }
    components = [component(f"x{i}", template="tx") for i in range(3)] + [
        component(f"y{i}", template="ty") for i in range(3)
    ]
    harness = Harness(
        deploy(*components), scripts=scripts, directory=FakeDirectory(limits={"tx": 1})
    )
    running = asyncio.create_task(harness.run())
    for i in range(3):
        await harness.adapters.until_started(f"y{i}")
    gate.set()
    assert await running is OperationStatus.SUCCEEDED
    assert harness.adapters.max_by_template["tx"] == 1
    assert harness.adapters.max_by_template["ty"] == 3


async def test_the_token_is_recorded_before_polling_starts() -> None:
    """A 202 token is durable before the first poll, so a restart can resume polling."""
    harness = Harness(deploy(component("a")), scripts={"a": Script(token="tok-1")})
    assert await harness.run() is OperationStatus.SUCCEEDED
    token_writes = [
        index
        for index, write in enumerate(harness.store.writes)
        if any(t.component_id == "a" and t.token == "tok-1" for t in write.tasks)
        and any((e.detail or {}).get("token") == "tok-1" for e in write.events)
    ]
    assert token_writes
    assert harness.adapters.waited == [("a", "tok-1")]


async def test_a_finishing_task_and_the_successors_it_unblocks_share_one_write() -> None:
    """B's RUNNING is recorded in the same write as A's SUCCEEDED: one commit per step."""
    harness = Harness(deploy(component("a"), component("b", depends_on=["a"])))
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert [("a", "SUCCEEDED"), ("b", "RUNNING")] in harness.store.snapshots


async def test_resuming_repeats_nothing_that_succeeded() -> None:
    """After a restart: SUCCEEDED is kept, a token resumes polling, an in-flight call is
    sent again, and waiting tasks run after them."""
    claimed = deploy(
        component("done"),
        component("polling"),
        component("inflight"),
        component("next", depends_on=["polling", "inflight"]),
    )
    done = {"status": TaskStatus.SUCCEEDED}
    as_left(
        claimed,
        **{UNIT: done, "done": done},
        polling={"status": TaskStatus.RUNNING, "token": "tok-9", "attempts": 1},
        inflight={"status": TaskStatus.RUNNING, "attempts": 1},
    )
    harness = Harness(claimed, scripts={"polling": Script(token="tok-9")})

    assert await harness.run() is OperationStatus.SUCCEEDED
    assert "done" not in harness.adapters.started
    assert "polling" not in harness.adapters.started
    assert harness.adapters.waited == [("polling", "tok-9")]
    assert harness.adapters.started.count("inflight") == 1
    assert harness.task("inflight").attempts == 2
    assert harness.task("polling").attempts == 1
    assert ("inflight", "RUNNING", "RUNNING") in harness.store.events()
    assert harness.adapters.started[-1] == "next"


async def test_resuming_after_a_failure_skips_its_waiting_dependents() -> None:
    """A task that failed before the restart still blocks what depends on it."""
    claimed = deploy(component("a"), component("b", depends_on=["a"]))
    as_left(claimed, **{UNIT: {"status": TaskStatus.SUCCEEDED}, "a": {"status": TaskStatus.FAILED}})
    harness = Harness(claimed)
    assert await harness.run() is OperationStatus.FAILED
    assert harness.task("b").status is TaskStatus.SKIPPED
    assert harness.adapters.started == []


async def test_a_lost_lease_stops_the_run_without_further_calls() -> None:
    """When the fence fails (another owner), the runner stops: no more calls, no result."""
    gate = asyncio.Event()
    harness = Harness(
        deploy(component("a"), component("b", depends_on=["a"])), scripts={"a": Script(gate=gate)}
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_started("a")
    harness.store.lost.add(harness.claimed.header.id)
    gate.set()
    assert await running is None
    assert "b" not in harness.adapters.started
    assert harness.store.final() is None


async def test_cancel_cuts_calls_in_flight_and_cancels_what_waits() -> None:
    """In flight: CANCELLED and the component CORRUPT; not started: CANCELLED, untouched."""
    gate = asyncio.Event()
    harness = Harness(
        deploy(component("a"), component("b", depends_on=["a"]), component("c")),
        scripts={"a": Script(gate=gate), "c": Script()},
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_started("a")
    await harness.adapters.until_finished("c")
    harness.runner.cancel()
    assert await running is OperationStatus.CANCELLED
    assert harness.task("a").status is TaskStatus.CANCELLED
    assert harness.component("a").status is ComponentStatus.CORRUPT
    assert harness.task("b").status is TaskStatus.CANCELLED
    assert harness.component("b").status is ComponentStatus.NOT_DEPLOYED
    assert harness.task("c").status is TaskStatus.SUCCEEDED
    assert harness.store.final() is OperationStatus.CANCELLED


async def test_the_operation_timeout_fails_what_is_still_running() -> None:
    """Past the operation's time budget, calls in flight end FAILED and so does the operation."""
    harness = Harness(
        deploy(component("stuck"), component("after", depends_on=["stuck"])),
        scripts={"stuck": Script(gate=asyncio.Event())},
        timeout=0.05,
    )
    assert await harness.run() is OperationStatus.FAILED
    assert harness.task("stuck").status is TaskStatus.FAILED
    assert "timed out" in harness.task("stuck").error["message"]
    assert harness.task("after").status is TaskStatus.CANCELLED
    last = next(w for w in reversed(harness.store.writes) if w.operation is not None)
    assert last.operation is not None
    assert "did not finish within" in (last.operation.error or "")


async def test_an_adapter_slower_than_its_timeout_fails_the_task() -> None:
    """timeoutSeconds bounds one adapter operation, polling included."""
    harness = Harness(
        deploy(component("slow", template="slow")),
        scripts={"slow": Script(gate=asyncio.Event())},
        directory=FakeDirectory(timeouts={"slow": 0.05}),
    )
    assert await harness.run() is OperationStatus.FAILED
    assert "did not finish within 0.05 s" in harness.task("slow").error["message"]


async def test_adapter_errors_fail_the_task_with_their_detail() -> None:
    error = AdapterError("urn answered 400", detail={"statusCode": 400, "userMessage": "bad"})
    harness = Harness(deploy(component("a")), scripts={"a": Script(error=error)})
    assert await harness.run() is OperationStatus.FAILED
    assert harness.task("a").error == {
        "message": "urn answered 400",
        "statusCode": 400,
        "userMessage": "bad",
    }


async def test_the_system_step_needs_no_adapter_unless_the_unit_names_one() -> None:
    """Without infrastructureTemplateId the unit is recorded; with one it gets its own call."""
    plain = Harness(deploy(component("a")))
    assert await plain.run() is OperationStatus.SUCCEEDED
    assert plain.adapters.started == ["a"]

    with_adapter = Harness(deploy(component("a"), template="tsys"))
    assert await with_adapter.run() is OperationStatus.SUCCEEDED
    assert with_adapter.adapters.started == [UNIT, "a"]
    assert with_adapter.adapters.requests[UNIT].descriptor_kind == "DATAPRODUCT_DESCRIPTOR"
    assert with_adapter.adapters.requests["a"].descriptor_kind == "COMPONENT_DESCRIPTOR"


async def test_an_adapter_no_longer_registered_fails_its_task() -> None:
    """No call was made, so the component keeps the status it had (not CORRUPT)."""
    claimed = deploy(component("a", template="gone"))
    claimed.components["a"] = replace(claimed.components["a"], status=ComponentStatus.DEPLOYED)
    harness = Harness(claimed, directory=FakeDirectory(missing={"gone"}))
    assert await harness.run() is OperationStatus.FAILED
    assert "no Tech Adapter is registered" in harness.task("a").error["message"]
    assert harness.component("a").status is ComponentStatus.DEPLOYED


async def test_a_crash_asks_the_store_to_abandon_the_operation() -> None:
    """After an internal error the run writes no state from memory (it may be what failed):
    it asks the store to fail what the database says is unfinished."""
    harness = Harness(deploy(component("a")))
    harness.recorder.start()
    await harness.runner.record_crash(RuntimeError("boom\x00"))
    await harness.recorder.close()
    (write,) = harness.store.writes
    assert write.abandon == "internal error: RuntimeError: boom"
    assert write.tasks == write.components == []
    assert harness.store.final() is OperationStatus.FAILED


class CancellingStore(FakeStore):
    """Applies writes, and once the write that starts ``trigger`` is applied, cancels the
    ``target`` task ``delay`` loop iterations later (as a lost lease or a shutdown does)."""

    def __init__(self, trigger: str, delay: int) -> None:
        super().__init__()
        self.trigger, self.delay = trigger, delay
        self.target: asyncio.Task[Any] | None = None

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        failed = await super().apply(writes, lease_seconds=lease_seconds)
        starts = [t for w in writes for t in w.tasks if t.status is TaskStatus.RUNNING]
        if any(t.component_id == self.trigger for t in starts):
            loop = asyncio.get_running_loop()

            def countdown(left: int) -> None:
                if left == 0:
                    assert self.target is not None
                    self.target.cancel()
                else:
                    loop.call_soon(countdown, left - 1)

            loop.call_soon(countdown, self.delay)
        return failed


@pytest.mark.parametrize("delay", range(12))
async def test_an_abandoned_run_gives_back_every_slot(delay: int) -> None:
    """Whenever the run is abandoned around a task's start, no slot stays taken (a leak would
    block an adapter with maxConcurrency 1 until the process restarts)."""
    store = CancellingStore("b", delay)
    recorder = Recorder(store, lease_seconds=30)
    slots = Slots(64)
    runner = OperationRunner(
        deploy(component("a"), component("b", depends_on=["a"], template="tb")),
        adapters=FakeAdapters(),
        directory=FakeDirectory(limits={"tb": 1}),
        recorder=recorder,
        slots=slots,
        clock=now,
    )
    recorder.start()
    store.target = asyncio.create_task(runner.run())
    with contextlib.suppress(asyncio.CancelledError):
        await store.target
    await recorder.close()
    assert slots.in_use == 0


class HookedStore(FakeStore):
    """Calls ``hook`` once, as the next write is applied."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return await super().apply(writes, lease_seconds=lease_seconds)


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
async def test_a_task_ends_once_when_stopped_during_a_write(stop: str) -> None:
    """A cancel or timeout landing while ready tasks wait for a write and a slot gives each
    task exactly one final status."""
    claimed = as_left(
        deploy(component("a"), component("b")), **{UNIT: {"status": TaskStatus.SUCCEEDED}}
    )
    store = HookedStore()
    recorder = Recorder(store, lease_seconds=30)
    runner = OperationRunner(
        claimed,
        adapters=FakeAdapters(),
        directory=FakeDirectory(),
        recorder=recorder,
        slots=Slots(1),
        clock=now,
        operation_timeout_seconds=1000,
    )
    store.hook = runner.cancel if stop == "cancel" else runner._on_timeout
    recorder.start()
    await runner.run()
    await recorder.close()
    for component_id in ("a", "b"):
        finals = [
            new
            for cid, _, new in store.events()
            if cid == component_id and new in ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED")
        ]
        assert len(finals) == 1, (component_id, finals)


async def test_a_cancel_that_cancelled_nothing_leaves_the_operation_succeeded() -> None:
    """The user's cancel arrives while the last result is being written: every task
    succeeded, so the operation did."""
    harness = Harness(deploy(component("a")))
    original = harness.store.apply

    async def apply(writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        if any(
            t.component_id == "a" and t.status is TaskStatus.SUCCEEDED
            for w in writes
            for t in w.tasks
        ):
            harness.runner.cancel()
        return await original(writes, lease_seconds=lease_seconds)

    harness.store.apply = apply  # type: ignore[method-assign]
    assert await harness.run() is OperationStatus.SUCCEEDED
