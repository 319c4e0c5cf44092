"""Runs one operation to its end: eager, event-driven scheduling of its tasks.

A task starts the moment all of its own dependencies have succeeded (not level by level).
Readiness lives in memory: each task counts the dependencies it still waits for, and a finishing
task decrements its successors' counts. The finishing task's result and the start of the
successors it unblocks are recorded in one write, before any of those successors calls its
adapter. When a task fails, running tasks finish, nothing downstream of the failure starts (those
tasks end SKIPPED) and independent branches carry on.

A deploy begins with a validation phase: every component's adapter validates it, concurrently
and under the same slots, and each verdict is recorded as it comes. If any component is invalid,
nothing is provisioned: the operation ends FAILED, every component keeps its status and the
release the status it had (the operation touched nothing).

Each task of the run is one ``_Task`` record: its current state (a frozen value, replaced as the
task moves on, so a write holds the state as it was when the write was made), its slot ticket,
and the step a cancel or timeout may cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import structlog

from provisioner import correlation
from provisioner.domain.status import (
    ComponentStatus,
    Interruption,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
    component_after,
    operation_outcome,
    records_provisioning,
    refused_task_status,
)
from provisioner.engine.acl import acl_call
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.ports import (
    JSON,
    AdapterDirectory,
    AdapterEndpoint,
    AdapterRequest,
    ClaimedOperation,
    ComponentState,
    EngineObserver,
    Event,
    OperationWrite,
    ProvisioningResult,
    QuietObserver,
    StateWrite,
    TaskState,
    TechAdapterPort,
    ValidationOutcome,
)
from provisioner.engine.recorder import Recorder
from provisioner.engine.requests import RequestBuilder
from provisioner.engine.slots import Slots, Ticket
from provisioner.errors import AdapterError, AdapterTimeoutError, LeaseLostError
from provisioner.offload import offload

log = structlog.get_logger(__name__)
T = TypeVar("T")


class _Cut:
    """Returned by ``_interruptible`` when cancel or timeout interrupted the awaited step."""


_CUT = _Cut()


@dataclass(slots=True, eq=False)
class _Task:
    """One task of the run: its current state and, while it runs, what it holds."""

    state: TaskState
    component: ComponentState
    endpoint: AdapterEndpoint | None  # None: no adapter to call
    waiting_for: int = 0  # dependencies that have not succeeded yet
    successors: list[_Task] = field(default_factory=list)
    ticket: Ticket | None = None  # its slot, while held
    cuttable: asyncio.Future[Any] | None = None  # the slot wait or call a stop may cut
    live: bool = False  # a coroutine runs it
    called: bool = False  # its adapter call may have been sent (by this run or a previous one)
    before: ComponentStatus = ComponentStatus.NOT_DEPLOYED  # its component, before it started

    @property
    def id(self) -> str:
        return self.state.component_id

    def release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()
            self.ticket = None


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
        validate_before_deploy: bool = True,
        share_private_info: bool = False,
        observer: EngineObserver | None = None,
    ) -> None:
        self._claimed = claimed
        self._header = claimed.header
        self._adapters = adapters
        self._recorder = recorder
        self._slots = slots
        self._clock = clock
        self._timeout = operation_timeout_seconds
        self._failpoints = failpoints or Failpoints()
        self._observer = observer or QuietObserver()
        self._tasks: dict[str, _Task] = {}
        for state in claimed.tasks:
            component = claimed.components[state.component_id]
            endpoint = (
                None
                if state.infrastructure_template_id is None
                else directory.resolve(state.infrastructure_template_id, self._header.environment)
            )
            self._tasks[state.component_id] = _Task(
                state,
                component,
                endpoint,
                called=state.status is TaskStatus.RUNNING,
                before=component.status,
            )
        for task in self._tasks.values():
            for dependency in task.state.depends_on:
                self._tasks[dependency].successors.append(task)
                task.waiting_for += self._tasks[dependency].state.status is not TaskStatus.SUCCEEDED
        self._stop: Interruption | None = None
        self._validates = validate_before_deploy
        self._share_private_info = share_private_info
        self._refusal: str | None = None  # why validation refused the deploy
        # A deploy's members, recorded with the start of its first task: a deploy that never
        # starts anything leaves the release as it was.
        self._members: list[str] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._builder: RequestBuilder | None = None
        # The request that submitted the operation: its adapter calls and log lines carry it
        # (``log`` is also what the worker logs about this run with).
        self._correlation = correlation.for_operation(
            self._header.id, self._header.request_id, self._header.trace_id
        )
        self.log = self._log = log.bind(
            operation_id=self._header.id,
            request_id=self._correlation.request_id,
            trace_id=self._correlation.trace_id,
        )

    @property
    def operation_id(self) -> str:
        return self._header.id

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> OperationStatus | None:
        """Run every remaining task; return the final status, or None if the lease was lost."""
        correlation.bind(self._correlation)  # this task's, and every task it starts
        self._builder = await offload(
            self._claimed.documents_size,
            RequestBuilder,
            self._claimed,
            share_private_info=self._share_private_info,
            calling={task.id for task in self._tasks.values() if task.endpoint is not None},
        )
        timer = self._arm_timeout()
        lease_lost = False
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if await self._validation_passed():
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
        self._halt(Interruption.CANCEL)

    def _halt(self, reason: Interruption) -> None:
        if self._stop is not None:
            return
        self._stop = reason
        if self._group is None:
            return  # not started yet: ``_begin`` sees the flag
        self._group.create_task(self._cancel_waiting())
        for task in self._tasks.values():
            if task.cuttable is not None:
                task.cuttable.cancel()

    def _arm_timeout(self) -> asyncio.TimerHandle | None:
        if self._timeout is None:
            return None
        started = self._claimed.started_at or self._clock()
        left = self._timeout - (self._clock() - started).total_seconds()
        return asyncio.get_running_loop().call_later(max(0.0, left), self._on_timeout)

    def _on_timeout(self) -> None:
        if self._group is not None and not self._all_terminal():
            self._log.warning("operation_timed_out", timeout_seconds=self._timeout)
            self._halt(Interruption.TIMEOUT)

    async def _begin(self) -> None:
        """Start (or resume) the tasks: skip what a failure blocks, resume, start the ready."""
        assert self._builder is not None
        now = self._clock()
        write = self._new_write()
        for task in self._tasks.values():
            if task.state.status.blocks_successors:
                self._skip_downstream(task, write, now)
        resumed = [t for t in self._tasks.values() if t.state.status is TaskStatus.RUNNING]
        ready = [
            t
            for t in self._tasks.values()
            if t.state.status is TaskStatus.WAITING and t.waiting_for == 0
        ]
        if self._claimed.cancel_requested:
            self._stop = Interruption.CANCEL
        self._members = self._builder.member_ids()
        started = [] if self._stop else self._start_ready(ready, write, now)
        if write.tasks or write.events:
            await self._write_then_run(write, started, [*resumed, *ready])
        else:
            for task in [*resumed, *ready]:
                self._spawn(task)
        if self._stop is not None:
            stop, self._stop = self._stop, None
            self._halt(stop)

    async def _conclude(self) -> OperationStatus:
        now = self._clock()
        outcome = operation_outcome(
            (task.state.status for task in self._tasks.values()), interruption=self._stop
        )
        error = None
        if self._stop is Interruption.TIMEOUT:
            error = f"the operation did not finish within {self._timeout:g} s"
        elif self._refusal is not None:
            error = self._refusal
        elif outcome is OperationStatus.FAILED and self._header.type is OperationType.UPDATE_ACL:
            error = _acl_error(self._tasks.values())
        elif outcome is OperationStatus.FAILED:
            failed = [t.id for t in self._tasks.values() if t.state.status is TaskStatus.FAILED]
            error = f"{len(failed)} task(s) failed: {', '.join(failed[:5])}"
        write = self._new_write()
        write.operation = OperationWrite(
            status=outcome, started_at=self._claimed.started_at, finished_at=now, error=error
        )
        write.events.append(
            Event(None, OperationStatus.RUNNING, outcome, now, {"error": error} if error else None)
        )
        await self._recorder.write(write)
        self._observer.operation_finished(self._header, outcome)
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
        self._observer.operation_finished(self._header, OperationStatus.FAILED)

    # --- validation -------------------------------------------------------------------------

    async def _validation_passed(self) -> bool:
        """The first phase of a deploy: each component's adapter validates it, all at once
        under the same slots as provisioning. A verdict is durable when it comes, so a restart
        asks only the adapters whose verdict was not recorded (validation changes nothing).
        False when a component is invalid: the tasks have ended and nothing was provisioned."""
        assert self._group is not None
        pending = self._awaiting_validation()
        if pending is None:
            return True
        if pending:
            children = [self._group.create_task(self._validate(task)) for task in pending]
            await asyncio.wait(children)
        if self._stop is not None:
            return True  # cancelled or timed out: ``_begin`` ends what is left
        invalid = [
            task
            for task in self._tasks.values()
            if task.state.validation is not None and not task.state.validation.get("valid")
        ]
        if not invalid:
            return True
        await self._refuse(invalid)
        return False

    def _awaiting_validation(self) -> list[_Task] | None:
        """The tasks still to validate; None when this run has no validation phase (not a
        deploy, validation turned off, cancelled, or provisioning has already begun)."""
        if not self._validates or self._header.type is not OperationType.DEPLOY:
            return None
        tasks = list(self._tasks.values())
        if self._claimed.cancel_requested or any(task.state.attempts > 0 for task in tasks):
            return None
        return [
            task
            for task in tasks
            if task.state.status is TaskStatus.WAITING
            and task.state.validation is None
            and task.endpoint is not None
            and task.endpoint.validate_before_deploy
        ]

    async def _validate(self, task: _Task) -> None:
        """Ask ``task``'s adapter to validate it (holding a slot meanwhile); record the verdict."""
        endpoint = task.endpoint
        assert endpoint is not None
        ticket = await self._interruptible(
            task, self._slots.acquire(endpoint.key, endpoint.max_concurrency)
        )
        if isinstance(ticket, _Cut):
            return
        task.ticket = ticket
        try:
            outcome = await self._interruptible(task, self._ask_validity(task, endpoint))
        finally:
            task.release()
        if isinstance(outcome, _Cut):
            return
        verdict = outcome.as_json()
        task.state = replace(task.state, validation=verdict)
        write = self._new_write()
        write.tasks.append(task.state)
        status = task.state.status
        write.events.append(Event(task.id, status, status, self._clock(), {"validation": verdict}))
        self._log.info("task_validated", component_id=task.id, valid=outcome.valid)
        await self._recorder.write(write)

    async def _ask_validity(self, task: _Task, endpoint: AdapterEndpoint) -> ValidationOutcome:
        assert self._builder is not None
        request = self._builder.validation_request(task.state)
        try:
            async with endpoint.time_limit(awaiting="validate"):
                return await self._adapters.validate(endpoint, request)
        except AdapterError as exc:
            # Not knowing is not valid: the deploy waits for an adapter that can answer.
            return ValidationOutcome(False, [f"could not validate: {exc.message}"])

    async def _refuse(self, invalid: list[_Task]) -> None:
        """Validation found ``invalid`` components: every task not yet ended ends (FAILED if
        invalid, else SKIPPED), no component changes, and the operation will end FAILED."""
        now = self._clock()
        write = self._new_write()
        bad = {task.id for task in invalid}
        for task in self._tasks.values():
            if task.state.status is not TaskStatus.WAITING:
                continue
            if task.id in bad:
                errors = list((task.state.validation or {}).get("errors") or [])
                shown = "; ".join(errors[:5]) or "no reason given"
                error = {"message": f"validation refused it: {shown}", "errors": errors}
                outcome = refused_task_status(valid=False)
                self._end(task, outcome, write, now, stamp=False, error=error)
            else:
                outcome = refused_task_status(valid=True)
                self._end(
                    task, outcome, write, now, stamp=False, detail={"refusedBy": "validation"}
                )
        ids = sorted(bad)
        listed = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        self._refusal = f"validation failed: {len(ids)} component(s) invalid: {listed}"
        self._log.info("deploy_refused_by_validation", invalid=len(ids))
        if write.tasks:
            await self._write(write)

    # --- one task ---------------------------------------------------------------------------

    def _spawn(self, task: _Task, after: asyncio.Future[None] | None = None) -> None:
        """Run ``task``; once ``after`` (a write in flight) is durable, if given."""
        assert self._group is not None
        task.live = True
        try:
            child = self._group.create_task(self._execute(task, after), name=task.id)
        except RuntimeError:  # the group is shutting down (lease lost): nothing more starts
            self._ended(task)
            return
        # However the coroutine ends (even cancelled before its first step, when the run is
        # abandoned), its slot goes back.
        child.add_done_callback(lambda _: self._ended(task))

    @staticmethod
    def _ended(task: _Task) -> None:
        task.live = False
        task.release()

    async def _execute(self, task: _Task, after: asyncio.Future[None] | None = None) -> None:
        """Run one task; a task that holds a ticket already has its start recorded (by
        ``after``, when given: nothing happens before that write is durable but building
        the request, which would otherwise wait for it)."""
        endpoint = task.endpoint
        request = None
        if after is not None:
            if task.ticket is not None and endpoint is not None and task.state.token is None:
                request = self._request(task)
            try:
                await asyncio.shield(after)
            except Exception:
                return  # the write failed: the task that submitted it raises why
        if task.state.status.is_terminal:  # cancelled while its spawn waited for a write
            return
        if endpoint is None:
            await self._finish_without_call(task)
            return
        if task.ticket is None:
            wait = self._slots.acquire(endpoint.key, endpoint.max_concurrency)
            ticket = await self._interruptible(task, wait)
            if isinstance(ticket, _Cut):
                await self._record_cut(task)
                return
            task.ticket = ticket
            if task.state.token is None:
                write = self._new_write()
                self._mark_started(task, write, self._clock())
                await self._write(write)
        began = time.perf_counter()
        result = await self._interruptible(task, self._call(task, endpoint, request))
        task.release()  # before the result is recorded: a successor may take the slot at once
        if isinstance(result, _Cut):
            assert self._stop is not None
            outcome = self._stop.task_status
        else:
            outcome = TaskStatus.SUCCEEDED if result.succeeded else TaskStatus.FAILED
        self._observer.task_finished(
            endpoint, task.state.action, outcome, time.perf_counter() - began
        )
        if isinstance(result, _Cut):
            await self._record_cut(task)
        else:
            await self._finish(task, result)

    async def _interruptible(self, task: _Task, step: Coroutine[Any, Any, T]) -> T | _Cut:
        """Await ``step`` so that cancel or timeout can cut it (and only it)."""
        if self._stop is not None:
            step.close()
            return _CUT
        future = asyncio.ensure_future(step)
        task.cuttable = future
        try:
            return await future
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if future.cancelled() and self._stop and not (current and current.cancelling()):
                return _CUT
            raise
        finally:
            task.cuttable = None

    def _request(self, task: _Task) -> AdapterRequest:
        assert self._builder is not None
        return self._builder.request(task.state, self._current_state)

    async def _call(
        self, task: _Task, endpoint: AdapterEndpoint, request: AdapterRequest | None = None
    ) -> ProvisioningResult:
        """``task``'s adapter call; ``request``: built already (see ``_execute``)."""
        if request is None:
            request = self._request(task)
        task.called = True
        component_id = task.id
        try:
            async with endpoint.time_limit():
                if task.state.action is TaskAction.UPDATE_ACL:
                    return await self._update_acl(task, endpoint)
                if task.state.token is None:
                    self._failpoints.check("before-call", component_id)
                    answer = await self._adapters.start(endpoint, request)
                    self._failpoints.check("after-call", component_id)
                    if isinstance(answer, ProvisioningResult):
                        return answer
                    await self._record_token(task, answer.token)
                    self._failpoints.check("while-polling", component_id)
                assert task.state.token is not None
                return await self._adapters.wait(endpoint, task.state.token)
        except AdapterError as exc:
            if isinstance(exc, AdapterTimeoutError):
                self._observer.adapter_error(endpoint, "timeout")
            return ProvisioningResult(succeeded=False, error=exc.detail)

    async def _update_acl(self, task: _Task, endpoint: AdapterEndpoint) -> ProvisioningResult:
        """An ACL update's one call; sent again after a restart (granting is idempotent)."""
        try:
            call = await offload(
                self._claimed.documents_size, acl_call, self._claimed, task.component
            )
        except LookupError as exc:
            return ProvisioningResult(succeeded=False, error={"message": str(exc)})
        self._failpoints.check("before-call", task.id)
        result = await self._adapters.update_acl(
            endpoint, refs=call.refs, request=call.request, result=call.result
        )
        self._failpoints.check("after-call", task.id)
        return result

    async def _record_token(self, task: _Task, token: str) -> None:
        """The adapter's token is durable before polling begins, so a restart resumes it."""
        task.state = replace(task.state, token=token)
        status = task.state.status
        write = self._new_write()
        write.tasks.append(task.state)
        write.events.append(Event(task.id, status, status, self._clock(), {"token": token}))
        await self._write(write)

    async def _finish_without_call(self, task: _Task) -> None:
        """The system step with no adapter of its own, or an adapter no longer registered.

        A unit-level template with no adapter registered (every real descriptor names
        ``urn:dmb:itm:dataproduct-provisioner:1``) means the system step makes no call; a
        component's unregistered template fails its task."""
        template = task.state.infrastructure_template_id
        detail: JSON | None = None
        if template is None:
            result = ProvisioningResult(succeeded=True)
        elif task.state.is_system:
            result = ProvisioningResult(succeeded=True)
            detail = {
                "note": f"no Tech Adapter is registered for the unit-level template "
                f"{template!r} in {self._header.environment!r}: the system step made no call"
            }
        else:
            result = ProvisioningResult(
                succeeded=False,
                error={
                    "message": f"no Tech Adapter is registered for {template!r} in "
                    f"{self._header.environment!r}"
                },
            )
        starting = task.state.status is TaskStatus.WAITING
        if starting:
            task.state = replace(
                task.state, started_at=self._clock(), attempts=task.state.attempts + 1
            )
        await self._finish(task, result, starting=starting, detail=detail)

    async def _finish(
        self,
        task: _Task,
        result: ProvisioningResult,
        *,
        starting: bool = False,
        detail: JSON | None = None,
    ) -> None:
        """Record the result; start (in the same write) the successors it unblocks.
        ``starting``: the task also started with this write (it needed no call); ``detail``:
        of its event."""
        now = self._clock()
        write = self._new_write()
        if starting:
            self._record_members(write)
        self._mark_finished(task, result, write, now, detail=detail)
        ready: list[_Task] = []
        if result.succeeded:
            for successor in task.successors:
                successor.waiting_for -= 1
                if successor.waiting_for == 0 and successor.state.status is TaskStatus.WAITING:
                    ready.append(successor)
        else:
            self._skip_downstream(task, write, now)
        if self._stop is not None:
            ready = []
        started = self._start_ready(ready, write, now)
        await self._write_then_run(write, started, ready)
        # Logged once recorded, and after the calls it starts are on their way: a line is
        # rendered and flushed where it is made, and this one held up each step of a chain.
        asyncio.get_running_loop().call_soon(self._log_finished, task)

    def _log_finished(self, task: _Task) -> None:
        state = task.state
        event = "acl_updated" if state.action is TaskAction.UPDATE_ACL else "task_finished"
        self._log.info(event, component_id=task.id, status=state.status, attempts=state.attempts)

    async def _record_cut(self, task: _Task) -> None:
        """A task stopped by cancel or timeout: CANCELLED, or FAILED for a timeout."""
        assert self._stop is not None
        reason = "the operation timed out" if self._stop is Interruption.TIMEOUT else "cancelled"
        if task.called:
            message = f"{reason} while the Tech Adapter call was in progress"
        else:
            message = f"{reason} before the Tech Adapter was called"
        write = self._new_write()
        self._end(task, self._stop.task_status, write, self._clock(), error={"message": message})
        await self._recorder.write(write)

    async def _cancel_waiting(self) -> None:
        """Tasks that have not started (and are not queued for a slot) end CANCELLED."""
        now = self._clock()
        write = self._new_write()
        for task in self._tasks.values():
            if task.state.status is TaskStatus.WAITING and not task.live:
                self._end(task, TaskStatus.CANCELLED, write, now)
        if write.tasks:
            await self._recorder.write(write)

    # --- state changes ----------------------------------------------------------------------

    def _start_ready(self, ready: Iterable[_Task], write: StateWrite, now: datetime) -> list[_Task]:
        """Take free slots for ready tasks at once, recording their start in ``write``."""
        started: list[_Task] = []
        for task in ready:
            endpoint = task.endpoint
            if endpoint is None:
                continue
            task.ticket = self._slots.try_acquire(endpoint.key, endpoint.max_concurrency)
            if task.ticket is not None:
                self._mark_started(task, write, now)
                started.append(task)
        return started

    async def _write_then_run(
        self, write: StateWrite, started: Iterable[_Task], tasks: Iterable[_Task]
    ) -> None:
        """Record ``write`` (which starts ``started``, holding their slots) and run ``tasks``
        once it is durable. They are spawned at once and wait for it themselves, so that the
        tasks it starts build their requests while it commits."""
        written = self._recorder.submit(write)
        for task in tasks:
            self._spawn(task, after=written)
        await self._written(written, started)

    async def _write(self, write: StateWrite, holding: Iterable[_Task] = ()) -> None:
        """Record ``write``; on failure give back the slots taken for tasks in ``holding``."""
        await self._written(self._recorder.submit(write), holding)

    @staticmethod
    async def _written(written: asyncio.Future[None], holding: Iterable[_Task]) -> None:
        """Wait for a submitted write (cancelling the wait does not withdraw it); on failure
        give back the slots taken for tasks in ``holding``."""
        try:
            await asyncio.shield(written)
        except BaseException:
            for task in holding:
                task.release()
            raise

    def _record_members(self, write: StateWrite) -> None:
        """The first start of a deploy's task makes the descriptor's components the release's
        members (again, after a restart: the same ones)."""
        if self._members is not None:
            write.members, self._members = self._members, None

    def _mark_started(self, task: _Task, write: StateWrite, now: datetime) -> None:
        assert self._builder is not None
        self._record_members(write)
        old = task.state
        task.state = replace(
            old,
            status=TaskStatus.RUNNING,
            started_at=now,
            finished_at=None,
            attempts=old.attempts + 1,
            error=None,
        )
        write.tasks.append(task.state)
        detail: JSON = {"attempt": task.state.attempts}
        if old.status is TaskStatus.RUNNING:
            detail["resent"] = True  # the previous owner's call may not have arrived
        write.events.append(Event(task.id, old.status, TaskStatus.RUNNING, now, detail))
        if not records_provisioning(task.state.action):
            return  # an ACL update leaves its component DEPLOYED while it runs
        changes: dict[str, Any] = {
            "status": ComponentStatus.IN_PROGRESS,
            "last_sent_operation_id": self._builder.document_operation(task.state),
        }
        if task.state.action is TaskAction.PROVISION:
            changes["depends_on"] = self._builder.provisioned_facts(task.state)[1]
            changes["infrastructure_template_id"] = task.state.infrastructure_template_id
        task.component = replace(task.component, **changes)
        write.components.append(task.component)

    def _mark_finished(
        self,
        task: _Task,
        result: ProvisioningResult,
        write: StateWrite,
        now: datetime,
        *,
        detail: JSON | None = None,
    ) -> None:
        assert self._builder is not None
        if task.state.action is TaskAction.UPDATE_ACL:
            self._mark_acl_finished(task, result, write, now)
            return
        changes: dict[str, Any] = {}
        if result.succeeded or result.public_info is not None or result.private_info is not None:
            changes.update(public_info=result.public_info, private_info=result.private_info)
        if result.logs:
            changes["logs"] = result.logs
        if result.succeeded and task.state.action is TaskAction.PROVISION:
            version, depends_on = self._builder.provisioned_facts(task.state)
            changes.update(
                version=version,
                depends_on=depends_on,
                last_provisioned_operation_id=self.operation_id,
            )
        elif result.succeeded:
            changes.update(version=None, refs=None)  # undeployed: nobody has access any more
        task.component = replace(task.component, **changes)
        outcome = TaskStatus.SUCCEEDED if result.succeeded else TaskStatus.FAILED
        self._end(
            task,
            outcome,
            write,
            now,
            detail=detail,
            error=result.error,
            public_info=result.public_info,
            private_info=result.private_info,
            logs=result.logs or None,
        )

    def _mark_acl_finished(
        self, task: _Task, result: ProvisioningResult, write: StateWrite, now: datetime
    ) -> None:
        """The adapter's answer stays on the task: the component keeps the info of its last
        provision (the next ACL update sends it) and, on success, holds the refs granted."""
        outcome = TaskStatus.SUCCEEDED if result.succeeded else TaskStatus.FAILED
        if result.succeeded:
            task.component = replace(task.component, refs=self._header.refs)
            write.components.append(task.component)
        self._end(
            task,
            outcome,
            write,
            now,
            error=result.error,
            public_info=result.public_info,
            private_info=result.private_info,
            logs=result.logs or None,
        )

    def _skip_downstream(self, failed: _Task, write: StateWrite, now: datetime) -> None:
        """Every waiting task downstream of ``failed`` ends SKIPPED."""
        stack = list(failed.successors)
        while stack:
            task = stack.pop()
            if task.state.status is not TaskStatus.WAITING:
                continue
            self._end(task, TaskStatus.SKIPPED, write, now, detail={"blockedBy": failed.id})
            stack.extend(task.successors)

    def _end(
        self,
        task: _Task,
        outcome: TaskStatus,
        write: StateWrite,
        now: datetime,
        *,
        detail: JSON | None = None,
        stamp: bool = True,
        **changes: Any,
    ) -> None:
        """``task`` ends with ``outcome``: its state, its component's (unless ``stamp`` is
        False: a task refused before anything ran leaves its component untouched), the event."""
        old = task.state.status
        task.state = replace(task.state, status=outcome, finished_at=now, **changes)
        write.tasks.append(task.state)
        error = changes.get("error")
        if detail is None and error:
            detail = {"error": error.get("message")}
        write.events.append(Event(task.id, old, outcome, now, detail))
        if not stamp or not records_provisioning(task.state.action):
            return
        task.component = replace(
            task.component,
            status=component_after(task.before, task.state.action, outcome, called=task.called),
            last_operation_id=self.operation_id,
            last_operation_type=self._header.type,
            last_task_status=outcome,
            last_finished_at=now,
        )
        write.components.append(task.component)

    def _current_state(self, component_id: str) -> ComponentState | None:
        """A component's state as of now: as this run left it, or as claimed."""
        task = self._tasks.get(component_id)
        return task.component if task is not None else self._claimed.components.get(component_id)

    def _new_write(self) -> StateWrite:
        return StateWrite(fence=self._claimed.fence, header=self._header)

    def _all_terminal(self) -> bool:
        return all(task.state.status.is_terminal for task in self._tasks.values())


def _acl_error(tasks: Iterable[_Task]) -> str:
    """A failed ACL update's error: what its adapter said."""
    for task in tasks:
        if task.state.status is TaskStatus.FAILED:
            message = (task.state.error or {}).get("message")
            return f"the ACL update of {task.id} failed: {message or 'no reason given'}"
    return "the ACL update did not complete"
