"""Runs one operation to its end: eager, event-driven scheduling of its tasks.

A task starts the moment all of its own dependencies have succeeded (not level by level).
Readiness lives in memory: each task counts the dependencies it still waits for, and a finishing
task decrements its successors' counts. The finishing task's result and the start of the
successors it unblocks are recorded in one write, before any of those successors calls its
adapter. When a task fails, running tasks finish, nothing downstream of the failure starts (those
tasks end SKIPPED) and independent branches carry on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import structlog

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    TaskAction,
    TaskStatus,
    operation_outcome,
)
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.ports import (
    JSON,
    AdapterDirectory,
    AdapterEndpoint,
    ClaimedOperation,
    ComponentState,
    Event,
    OperationWrite,
    ProvisioningResult,
    StateWrite,
    TaskState,
    TechAdapterPort,
)
from provisioner.engine.recorder import Recorder
from provisioner.engine.requests import RequestBuilder
from provisioner.engine.slots import Slots
from provisioner.errors import AdapterError, LeaseLostError

log = structlog.get_logger(__name__)
T = TypeVar("T")
# Above this many bytes of descriptors, requests are built in a worker thread; below it the
# hop to a thread costs more than the work.
THREAD_BUILD_BYTES = 256 * 1024


class _Stop(Enum):
    CANCEL = "cancel"  # asked by a user: the operation ends CANCELLED
    TIMEOUT = "timeout"  # the operation's time budget ran out: it ends FAILED


class _Cut:
    """Returned by ``_cuttable`` when cancel or timeout interrupted the awaited step."""


_CUT = _Cut()


class OperationRunner:
    """Drives the tasks of one claimed operation; one instance per run.

    To abandon a run (lease lost, shutdown), cancel the asyncio task running ``run``: nothing
    more is written and the next owner resumes from the database. ``cancel`` is the user's
    cancel, which records its outcome.
    """

    def __init__(
        self,
        claimed: ClaimedOperation,
        *,
        adapters: TechAdapterPort,
        directory: AdapterDirectory,
        recorder: Recorder,
        slots: Slots,
        clock: Callable[[], datetime],
        operation_timeout_seconds: float | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self._claimed = claimed
        self._failpoints = failpoints or Failpoints()
        self._header = claimed.header
        self._adapters = adapters
        self._directory = directory
        self._recorder = recorder
        self._slots = slots
        self._clock = clock
        self._timeout = operation_timeout_seconds
        self._tasks = {task.component_id: task for task in claimed.tasks}
        self._components = claimed.components
        self._successors: defaultdict[str, list[str]] = defaultdict(list)
        for task in claimed.tasks:
            for dependency in task.depends_on:
                self._successors[dependency].append(task.component_id)
        self._remaining = {
            task.component_id: sum(
                self._tasks[dep].status is not TaskStatus.SUCCEEDED for dep in task.depends_on
            )
            for task in claimed.tasks
        }
        self._spawned: set[str] = set()  # tasks with a live coroutine
        self._entered: set[str] = set()  # tasks whose coroutine has begun
        # Tasks whose adapter call has been sent (by this run, or by a previous owner).
        self._calling = {t.component_id for t in claimed.tasks if t.status is TaskStatus.RUNNING}
        self._status_before: dict[str, ComponentStatus] = {}
        self._cuttable: dict[str, asyncio.Future[Any]] = {}  # slot waits and adapter calls
        self._stop: _Stop | None = None
        self._group: asyncio.TaskGroup | None = None
        self._builder: RequestBuilder | None = None
        self._log = log.bind(operation_id=self._header.id)

    @property
    def operation_id(self) -> str:
        return self._header.id

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> OperationStatus | None:
        """Run every remaining task; return the final status, or None if the lease was lost."""
        if self._claimed.documents_size > THREAD_BUILD_BYTES:
            self._builder = await asyncio.to_thread(RequestBuilder, self._claimed)
        else:
            self._builder = RequestBuilder(self._claimed)
        timer = self._arm_timeout()
        lease_lost = False
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._begin()
        except* LeaseLostError:
            lease_lost = True
        finally:
            self._group = None
            if timer is not None:
                timer.cancel()
        if lease_lost:
            self._log.warning("lease_lost")
            return None
        return await self._conclude()

    def cancel(self) -> None:
        """Stop the operation on a user's request: it ends CANCELLED."""
        self._halt(_Stop.CANCEL)

    def _halt(self, reason: _Stop) -> None:
        if self._stop is not None:
            return
        self._stop = reason
        if self._group is None:
            return  # not started yet: ``_begin`` sees the flag
        self._group.create_task(self._cancel_waiting())
        for step in list(self._cuttable.values()):
            step.cancel()

    def _arm_timeout(self) -> asyncio.TimerHandle | None:
        if self._timeout is None:
            return None
        started = self._claimed.started_at or self._clock()
        left = self._timeout - (self._clock() - started).total_seconds()
        return asyncio.get_running_loop().call_later(max(0.0, left), self._on_timeout)

    def _on_timeout(self) -> None:
        if self._group is not None and not self._all_terminal():
            self._log.warning("operation_timed_out", timeout_seconds=self._timeout)
            self._halt(_Stop.TIMEOUT)

    async def _begin(self) -> None:
        """Start (or resume) the tasks: skip what a failure blocks, resume, start the ready."""
        now = self._clock()
        write = self._new_write()
        for task in self._tasks.values():
            if task.status in (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED):
                self._skip_downstream(task.component_id, write, now)
        resumed = [task for task in self._tasks.values() if task.status is TaskStatus.RUNNING]
        ready = [
            task
            for task in self._tasks.values()
            if task.status is TaskStatus.WAITING and self._remaining[task.component_id] == 0
        ]
        if self._claimed.cancel_requested:
            self._stop = _Stop.CANCEL
        assert self._builder is not None
        write.members = self._builder.member_ids()
        started = set() if self._stop else self._start_ready(ready, write, now)
        if write.tasks or write.events or write.members is not None:
            await self._write(write, started)
        for task in [*resumed, *ready]:
            self._spawn(task.component_id, started=task.component_id in started)
        if self._stop is not None:
            stop, self._stop = self._stop, None
            self._halt(stop)

    async def _conclude(self) -> OperationStatus:
        now = self._clock()
        outcome = operation_outcome(
            (task.status for task in self._tasks.values()), cancelled=self._stop is _Stop.CANCEL
        )
        error = None
        if self._stop is _Stop.TIMEOUT:
            error = f"the operation did not finish within {self._timeout:g} s"
        elif outcome is OperationStatus.FAILED:
            failed = [t.component_id for t in self._tasks.values() if t.status is TaskStatus.FAILED]
            error = f"{len(failed)} task(s) failed: {', '.join(failed[:5])}"
        write = self._new_write()
        write.operation = OperationWrite(
            status=outcome, started_at=self._claimed.started_at, finished_at=now, error=error
        )
        write.events.append(
            Event(None, OperationStatus.RUNNING, outcome, now, {"error": error} if error else None)
        )
        await self._recorder.write(write)
        self._log.info("operation_finished", status=outcome)
        return outcome

    async def record_crash(self, exc: BaseException) -> None:
        """After an unexpected error: the operation and its unfinished tasks end FAILED.

        The database, not memory, says what is unfinished: the state that failed to be written
        may be what caused the error, so only statuses are written.
        """
        message = f"internal error: {type(exc).__name__}: {exc}"
        write = self._new_write()
        write.abandon = "".join(ch for ch in message if ch.isprintable())[:1000]
        await self._recorder.write(write)

    # --- one task ---------------------------------------------------------------------------

    def _spawn(self, component_id: str, *, started: bool) -> None:
        assert self._group is not None
        self._spawned.add(component_id)
        try:
            child = self._group.create_task(
                self._execute(component_id, started=started), name=component_id
            )
        except RuntimeError:  # the group is shutting down (lease lost): nothing more starts
            self._spawned.discard(component_id)
            if started:
                self._release_slot(component_id)
            return
        if started:
            # Cancelled before its first step (the run was abandoned), the task never reaches
            # the code that gives its slot back: give it back here.
            child.add_done_callback(lambda _: self._release_if_never_entered(component_id))

    def _release_if_never_entered(self, component_id: str) -> None:
        if component_id not in self._entered:
            self._release_slot(component_id)

    def _release_slot(self, component_id: str) -> None:
        endpoint = self._endpoint(self._tasks[component_id])
        if endpoint is not None:
            self._slots.release(endpoint.key)

    async def _execute(self, component_id: str, *, started: bool) -> None:
        """Run one task; ``started`` means its slot is held and its start already recorded."""
        self._entered.add(component_id)
        task = self._tasks[component_id]
        if task.status.is_terminal:  # cancelled while its spawn waited for a write
            self._spawned.discard(component_id)
            if started:
                self._release_slot(component_id)
            return
        try:
            endpoint = self._endpoint(task)
            if endpoint is None:
                await self._finish_without_call(task)
                return
            if not started:
                wait = self._slots.acquire(endpoint.key, endpoint.max_concurrency)
                if await self._interruptible(component_id, wait) is _CUT:
                    await self._record_cut(task)
                    return
            try:
                if not started and task.token is None:
                    write = self._new_write()
                    self._mark_started(task, write, self._clock())
                    await self._write(write)
                result = await self._interruptible(component_id, self._call(task, endpoint))
            finally:
                self._slots.release(endpoint.key)
            if isinstance(result, _Cut):
                await self._record_cut(task)
            else:
                await self._finish(task, result)
        finally:
            self._spawned.discard(component_id)

    async def _interruptible(self, component_id: str, step: Coroutine[Any, Any, T]) -> T | _Cut:
        """Await ``step`` so that cancel or timeout can cut it (and only it)."""
        if self._stop is not None:
            step.close()
            return _CUT
        future = asyncio.ensure_future(step)
        self._cuttable[component_id] = future
        try:
            return await future
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if future.cancelled() and self._stop and not (current and current.cancelling()):
                return _CUT
            raise
        finally:
            del self._cuttable[component_id]

    def _endpoint(self, task: TaskState) -> AdapterEndpoint | None:
        if task.infrastructure_template_id is None:
            return None
        return self._directory.resolve(task.infrastructure_template_id, self._header.environment)

    async def _call(self, task: TaskState, endpoint: AdapterEndpoint) -> ProvisioningResult:
        assert self._builder is not None
        request = self._builder.request(task)
        self._calling.add(task.component_id)
        try:
            async with asyncio.timeout(endpoint.timeout_seconds):
                if task.token is None:
                    self._failpoints.check("before-call", task.component_id)
                    answer = await self._adapters.start(endpoint, request)
                    self._failpoints.check("after-call", task.component_id)
                    if isinstance(answer, ProvisioningResult):
                        return answer
                    task.token = answer.token
                    write = self._new_write(tasks=[task])
                    write.events.append(
                        Event(
                            task.component_id,
                            task.status,
                            task.status,
                            self._clock(),
                            {"token": answer.token},
                        )
                    )
                    await self._write(write)
                    self._failpoints.check("while-polling", task.component_id)
                return await self._adapters.wait(endpoint, task.token)
        except AdapterError as exc:
            return ProvisioningResult(succeeded=False, error=exc.detail)
        except TimeoutError:
            return ProvisioningResult(
                succeeded=False,
                error={
                    "message": f"the Tech Adapter did not finish within "
                    f"{endpoint.timeout_seconds:g} s (timeoutSeconds)",
                    "timeoutSeconds": endpoint.timeout_seconds,
                },
            )

    async def _finish_without_call(self, task: TaskState) -> None:
        """The system step with no adapter of its own, or an adapter no longer registered."""
        if task.infrastructure_template_id is None:
            result = ProvisioningResult(succeeded=True)
        else:
            result = ProvisioningResult(
                succeeded=False,
                error={
                    "message": f"no Tech Adapter is registered for "
                    f"{task.infrastructure_template_id!r} in {self._header.environment!r}"
                },
            )
        if task.status is TaskStatus.WAITING:
            task.started_at = self._clock()
            task.attempts += 1
        await self._finish(task, result, called=False)

    async def _finish(
        self, task: TaskState, result: ProvisioningResult, *, called: bool = True
    ) -> None:
        """Record the result; start (in the same write) the successors it unblocks."""
        now = self._clock()
        write = self._new_write()
        self._mark_finished(task, result, write, now, called=called)
        ready: list[TaskState] = []
        if result.succeeded:
            for successor in self._successors[task.component_id]:
                self._remaining[successor] -= 1
                candidate = self._tasks[successor]
                if self._remaining[successor] == 0 and candidate.status is TaskStatus.WAITING:
                    ready.append(candidate)
        else:
            self._skip_downstream(task.component_id, write, now)
        if self._stop is not None:
            ready = []
        started = self._start_ready(ready, write, now)
        await self._write(write, started)
        for candidate in ready:
            self._spawn(candidate.component_id, started=candidate.component_id in started)

    async def _record_cut(self, task: TaskState) -> None:
        """A task stopped by cancel or timeout: CANCELLED, or FAILED for a timeout.

        If its adapter call had been sent, nobody knows what the adapter did: the component is
        CORRUPT. Otherwise the component keeps the status it had.
        """
        now = self._clock()
        write = self._new_write()
        was_calling = task.component_id in self._calling
        status = TaskStatus.FAILED if self._stop is _Stop.TIMEOUT else TaskStatus.CANCELLED
        reason = "the operation timed out" if self._stop is _Stop.TIMEOUT else "cancelled"
        message = (
            f"{reason} while the Tech Adapter call was in progress"
            if was_calling
            else f"{reason} before the Tech Adapter was called"
        )
        old = task.status
        task.status, task.finished_at, task.error = status, now, {"message": message}
        write.tasks.append(task)
        write.events.append(Event(task.component_id, old, status, now, {"error": message}))
        component = self._components[task.component_id]
        if was_calling:
            component.status = ComponentStatus.CORRUPT
        elif task.component_id in self._status_before:
            component.status = self._status_before[task.component_id]
        self._stamp_last_operation(component, status, now)
        write.components.append(component)
        await self._recorder.write(write)

    async def _cancel_waiting(self) -> None:
        """Tasks that have not started (and are not queued for a slot) end CANCELLED."""
        now = self._clock()
        write = self._new_write()
        for task in self._tasks.values():
            if task.status is TaskStatus.WAITING and task.component_id not in self._spawned:
                task.status, task.finished_at = TaskStatus.CANCELLED, now
                write.tasks.append(task)
                write.events.append(Event(task.component_id, TaskStatus.WAITING, task.status, now))
                component = self._components[task.component_id]
                self._stamp_last_operation(component, task.status, now)
                write.components.append(component)
        if write.tasks:
            await self._recorder.write(write)

    # --- state changes ----------------------------------------------------------------------

    def _start_ready(
        self, ready: Iterable[TaskState], write: StateWrite, now: datetime
    ) -> set[str]:
        """Take free slots for ready tasks at once, recording their start in ``write``."""
        started: set[str] = set()
        for task in ready:
            endpoint = self._endpoint(task)
            if endpoint is None or not self._slots.try_acquire(
                endpoint.key, endpoint.max_concurrency
            ):
                continue
            self._mark_started(task, write, now)
            started.add(task.component_id)
        return started

    async def _write(self, write: StateWrite, holding: Iterable[str] = ()) -> None:
        """Record ``write``; on failure give back the slots taken for tasks in ``holding``."""
        try:
            await self._recorder.write(write)
        except BaseException:
            for component_id in holding:
                self._release_slot(component_id)
            raise

    def _mark_started(self, task: TaskState, write: StateWrite, now: datetime) -> None:
        assert self._builder is not None
        old = task.status
        task.status, task.started_at, task.finished_at = TaskStatus.RUNNING, now, None
        task.attempts += 1
        task.error = None
        write.tasks.append(task)
        detail: JSON = {"attempt": task.attempts}
        if old is TaskStatus.RUNNING:
            detail["resent"] = True  # the previous owner's call may not have arrived
        write.events.append(Event(task.component_id, old, TaskStatus.RUNNING, now, detail))
        component = self._components[task.component_id]
        self._status_before.setdefault(task.component_id, component.status)
        component.status = ComponentStatus.IN_PROGRESS
        component.last_sent_operation_id = self._builder.document_operation(task)
        if task.action is TaskAction.PROVISION:
            _, component.depends_on = self._builder.provisioned_facts(task)
            component.infrastructure_template_id = task.infrastructure_template_id
        write.components.append(component)

    def _mark_finished(
        self,
        task: TaskState,
        result: ProvisioningResult,
        write: StateWrite,
        now: datetime,
        *,
        called: bool = True,
    ) -> None:
        assert self._builder is not None
        old = task.status
        task.status = TaskStatus.SUCCEEDED if result.succeeded else TaskStatus.FAILED
        task.finished_at = now
        task.public_info, task.private_info = result.public_info, result.private_info
        task.logs, task.error = result.logs or None, result.error
        write.tasks.append(task)
        detail = {"error": result.error.get("message")} if result.error else None
        write.events.append(Event(task.component_id, old, task.status, now, detail))
        component = self._components[task.component_id]
        has_info = result.public_info is not None or result.private_info is not None
        if result.succeeded or has_info:
            component.public_info, component.private_info = result.public_info, result.private_info
        if result.logs:
            component.logs = result.logs
        if not result.succeeded:
            if called:  # the adapter may have done part of the work
                component.status = ComponentStatus.CORRUPT
        elif task.action is TaskAction.PROVISION:
            component.status = ComponentStatus.DEPLOYED
            component.version, component.depends_on = self._builder.provisioned_facts(task)
            component.last_provisioned_operation_id = self._header.id
        else:
            component.status = ComponentStatus.NOT_DEPLOYED
            component.version = None
        self._stamp_last_operation(component, task.status, now)
        write.components.append(component)
        self._log.info(
            "task_finished",
            component_id=task.component_id,
            status=task.status,
            attempts=task.attempts,
        )

    def _skip_downstream(self, component_id: str, write: StateWrite, now: datetime) -> None:
        """Every waiting task downstream of ``component_id`` ends SKIPPED."""
        stack = list(self._successors[component_id])
        while stack:
            task = self._tasks[stack.pop()]
            if task.status is not TaskStatus.WAITING:
                continue
            task.status, task.finished_at = TaskStatus.SKIPPED, now
            write.tasks.append(task)
            write.events.append(
                Event(
                    task.component_id,
                    TaskStatus.WAITING,
                    TaskStatus.SKIPPED,
                    now,
                    {"blockedBy": component_id},
                )
            )
            component = self._components[task.component_id]
            self._stamp_last_operation(component, TaskStatus.SKIPPED, now)
            write.components.append(component)
            stack.extend(self._successors[task.component_id])

    def _stamp_last_operation(
        self, component: ComponentState, status: TaskStatus, now: datetime
    ) -> None:
        component.last_operation_id = self._header.id
        component.last_operation_type = self._header.type
        component.last_task_status = status
        component.last_finished_at = now

    def _new_write(self, *, tasks: list[TaskState] | None = None) -> StateWrite:
        return StateWrite(fence=self._claimed.fence, header=self._header, tasks=tasks or [])

    def _all_terminal(self) -> bool:
        return all(task.status.is_terminal for task in self._tasks.values())
