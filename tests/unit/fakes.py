"""In-memory implementations of the engine's ports, for engine tests without I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from provisioner.domain.descriptor import parse_descriptor
from provisioner.domain.plan import plan_deploy
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
)
from provisioner.engine.ports import (
    Accepted,
    AdapterEndpoint,
    AdapterErrorKind,
    AdapterRequest,
    ClaimedOperation,
    ComponentState,
    Fence,
    OperationHeader,
    ProvisioningResult,
    StateWrite,
    TaskState,
    ValidationOutcome,
)
from provisioner.errors import AdapterError, ReleaseChangedError
from provisioner.store.submissions import NewOperation, ReleaseState
from provisioner.store.views import EventView, OperationView, Page, ReleaseView

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeDirectory:
    """Every template resolves, except those listed as missing; limits per template."""

    def __init__(
        self,
        *,
        limits: dict[str, int] | None = None,
        timeouts: dict[str, float] | None = None,
        missing: set[str] | None = None,
    ) -> None:
        self.limits = limits or {}
        self.timeouts = timeouts or {}
        self.missing = missing or set()

    def resolve(self, template: str, environment: str) -> AdapterEndpoint | None:
        if template in self.missing:
            return None
        return AdapterEndpoint(
            infrastructure_template_id=template,
            url=f"http://{template}",
            timeout_seconds=self.timeouts.get(template, 60.0),
            max_concurrency=self.limits.get(template),
        )


@dataclass
class Script:
    """How the fake adapter answers for one component."""

    fail: bool = False
    error: AdapterError | None = None
    token: str | None = None  # answer 202 with this token
    gate: asyncio.Event | None = None  # block the call until set
    info: dict[str, Any] = field(default_factory=lambda: {"url": "x"})
    invalid: list[str] | None = None  # validation answers invalid, for these reasons
    validation_error: AdapterError | None = None  # validation cannot be answered
    validation_gate: asyncio.Event | None = None  # block validation until set


class FakeAdapters:
    """Records calls; answers from per-component scripts; tracks calls in flight."""

    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        self.scripts = scripts or {}
        self.started: list[str] = []
        self.waited: list[tuple[str, str]] = []
        self.requests: dict[str, AdapterRequest] = {}
        self.finished: list[str] = []
        self.validated: list[str] = []
        self.validation_requests: dict[str, AdapterRequest] = {}
        self.acl_calls: list[tuple[str, list[str], str]] = []  # component, refs, result
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_template: dict[str, int] = {}
        self.max_by_template: dict[str, int] = {}
        self.changed = asyncio.Condition()

    def _script(self, component_id: str) -> Script:
        return self.scripts.setdefault(component_id, Script())

    async def start(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ProvisioningResult | Accepted:
        component_id = _component_of(request)
        self.started.append(component_id)
        self.requests[component_id] = request
        script = self._script(component_id)
        if script.token is not None:
            return Accepted(script.token)
        return await self._run(endpoint, component_id, script)

    async def validate(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ValidationOutcome:
        component_id = _component_of(request)
        self.validation_requests[component_id] = request
        script = self._script(component_id)
        self._enter(endpoint.infrastructure_template_id)
        async with self.changed:
            self.changed.notify_all()
        try:
            if script.validation_gate is not None:
                await script.validation_gate.wait()
            else:
                await asyncio.sleep(0)
            self.validated.append(component_id)
            async with self.changed:
                self.changed.notify_all()
            if script.validation_error is not None:
                raise script.validation_error
            return ValidationOutcome(script.invalid is None, list(script.invalid or []))
        finally:
            self._leave(endpoint.infrastructure_template_id)

    def _enter(self, template: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_by_template[template] = self.in_flight_by_template.get(template, 0) + 1
        self.max_by_template[template] = max(
            self.max_by_template.get(template, 0), self.in_flight_by_template[template]
        )

    def _leave(self, template: str) -> None:
        self.in_flight -= 1
        self.in_flight_by_template[template] -= 1

    async def until_validating(self, component_id: str) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: component_id in self.validation_requests)

    async def update_acl(
        self, endpoint: AdapterEndpoint, *, refs: list[str], request: str, result: str
    ) -> ProvisioningResult:
        component_id = str(yaml.safe_load(request)["componentIdToProvision"])
        self.acl_calls.append((component_id, list(refs), result))
        return await self._run(endpoint, component_id, self._script(component_id))

    async def wait(self, endpoint: AdapterEndpoint, token: str) -> ProvisioningResult:
        component_id = next(cid for cid, s in self.scripts.items() if s.token == token)
        self.waited.append((component_id, token))
        return await self._run(endpoint, component_id, self._script(component_id))

    async def _run(
        self, endpoint: AdapterEndpoint, component_id: str, script: Script
    ) -> ProvisioningResult:
        template = endpoint.infrastructure_template_id
        self._enter(template)
        async with self.changed:
            self.changed.notify_all()
        try:
            if script.gate is not None:
                await script.gate.wait()
            else:
                await asyncio.sleep(0)
            if script.error is not None:
                raise script.error
            self.finished.append(component_id)
            async with self.changed:
                self.changed.notify_all()
            if script.fail:
                return ProvisioningResult(
                    False, error={"message": "the Tech Adapter reported FAILED"}
                )
            return ProvisioningResult(
                True, public_info=script.info, private_info={"s": component_id}
            )
        finally:
            self._leave(template)

    async def until_finished(self, component_id: str) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: component_id in self.finished)

    async def until_started(self, component_id: str) -> None:
        async with self.changed:
            await self.changed.wait_for(
                lambda: (
                    component_id in self.started or any(c == component_id for c, _ in self.waited)
                )
            )


def _component_of(request: AdapterRequest) -> str:
    text = request.descriptor.text
    if request.descriptor_kind == "DATAPRODUCT_DESCRIPTOR":
        return next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("id:")
        )
    last = text.rstrip().splitlines()[-1]
    return last.split(":", 1)[1].strip().strip("'\"")


class FakeStore:
    """Applies writes to nothing but a list; fences can be made to fail."""

    def __init__(self) -> None:
        self.writes: list[StateWrite] = []
        self.applies: list[int] = []  # batch sizes
        self.lost: set[str] = set()
        self.failures: list[Exception] = []  # raised by the next apply calls, in order
        self.snapshots: list[list[tuple[str, str]]] = []
        # The latest state written of each task and component, by id.
        self.tasks: dict[str, TaskState] = {}
        self.components: dict[str, ComponentState] = {}

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        if self.failures:
            raise self.failures.pop(0)
        self.applies.append(len(writes))
        failed = {w.fence.operation_id for w in writes if w.fence.operation_id in self.lost}
        for write in writes:
            if write.fence.operation_id not in failed:
                self.writes.append(write)
                self.snapshots.append([(t.component_id, t.status.value) for t in write.tasks])
                self.tasks.update((t.component_id, t) for t in write.tasks)
                self.components.update((c.component_id, c) for c in write.components)
        return failed

    async def claim(self, **_: Any) -> list[ClaimedOperation]:
        return []

    async def renew_leases(self, fences: Sequence[Fence], **_: Any) -> tuple[set[str], set[str]]:
        return set(), set()

    async def release_leases(self, fences: Sequence[Fence]) -> None:
        return None

    def events(self) -> list[tuple[str | None, str | None, str]]:
        return [
            (event.component_id, event.old_status, event.new_status)
            for write in self.writes
            for event in write.events
        ]

    def final(self) -> OperationStatus | None:
        for write in reversed(self.writes):
            if write.abandon is not None:
                return OperationStatus.FAILED
            if write.operation is not None:
                return write.operation.status
        return None


def claimed_deploy(document: dict[str, Any], *, operation_id: str = "op-1") -> ClaimedOperation:
    """A freshly claimed DEPLOY of ``document``, as the store would hand it over."""
    parsed = parse_descriptor(document)
    assert not parsed.problems, parsed.problems
    plan = plan_deploy(parsed.unit)
    tasks = [
        TaskState(
            component_id=step.component_id,
            action=step.action,
            status=TaskStatus.WAITING,
            depends_on=step.depends_on,
            infrastructure_template_id=step.infrastructure_template_id,
            is_system=step.is_system,
        )
        for step in plan.steps
    ]
    components = {
        task.component_id: ComponentState(
            component_id=task.component_id,
            is_system=task.is_system,
            status=ComponentStatus.NOT_DEPLOYED,
        )
        for task in tasks
    }
    return ClaimedOperation(
        header=OperationHeader(
            id=operation_id,
            type=OperationType.DEPLOY,
            deployment_unit_id=parsed.unit.id,
            environment="development",
            version=parsed.unit.version,
            remove_data=False,
            created_at=T0,
        ),
        fence=Fence(operation_id, 1),
        status=OperationStatus.RUNNING,
        started_at=now(),  # claimed just now
        cancel_requested=False,
        tasks=tasks,
        components=components,
        documents={operation_id: document},
        release_descriptor_operation_id=None,
    )


def now() -> datetime:
    return datetime.now(UTC)


# --- the service's ports ---------------------------------------------------------------------


class FakeSubmissions:
    """Releases and submitted operations in memory; ``changes`` makes the next submits find the
    release changed (``ReleaseChangedError``), as if another request had won the race."""

    def __init__(self) -> None:
        self.releases: dict[tuple[str, str], ReleaseState] = {}
        self.submitted: list[NewOperation] = []
        self.reads = 0
        self.changes = 0
        self.cancels: dict[str, OperationStatus] = {}

    def release(self, unit_id: str, *states: ComponentState, **fields: Any) -> ReleaseState:
        """Set the release of ``unit_id`` in development to these component states."""
        state = ReleaseState(
            unit_id,
            "development",
            components={s.component_id: s for s in states},
            **fields,
        )
        self.releases[(unit_id, "development")] = state
        return state

    async def release_state(self, deployment_unit_id: str, environment: str) -> ReleaseState:
        self.reads += 1
        key = (deployment_unit_id, environment)
        return self.releases.get(key, ReleaseState(deployment_unit_id, environment))

    async def submit(
        self, new: NewOperation, *, based_on: ReleaseState | None = None
    ) -> OperationView:
        if based_on is not None and self.changes:
            self.changes -= 1
            raise ReleaseChangedError("changed")
        self.submitted.append(new)
        return new.view()

    async def request_cancel(
        self, operation_id: str, *, now: datetime, principal: str | None = None
    ) -> OperationStatus:
        return self.cancels[operation_id]


class FakeReads:
    """Operations and documents in memory."""

    def __init__(self) -> None:
        self.views: dict[str, OperationView] = {}
        self.documents: dict[str, dict[str, Any]] = {}

    async def operation(self, operation_id: str) -> OperationView | None:
        return self.views.get(operation_id)

    async def operations(self, **_: Any) -> Page[OperationView]:
        return Page(list(self.views.values()), None)

    async def events(self, operation_id: str, *, after: int, limit: int) -> list[EventView]:
        return []

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView | None:
        return None

    async def releases(self, **_: Any) -> Page[ReleaseView]:
        return Page([], None)

    async def document(self, operation_id: str) -> dict[str, Any] | None:
        return self.documents.get(operation_id)


class FakeWorker:
    def __init__(self) -> None:
        self.wakes = 0
        self.cancelled: list[str] = []

    def wake(self) -> None:
        self.wakes += 1

    def cancel(self, operation_id: str) -> bool:
        self.cancelled.append(operation_id)
        return True


class RecordingObserver:
    """An ``EngineObserver`` (and the adapter client's and service's observers) that keeps
    what it is told, as tuples."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [item[1:] for item in self.seen if item[0] == kind]

    def operation_submitted(self, header: OperationHeader) -> None:
        self.seen.append(("submitted", header.id))

    def operation_started(self, header: OperationHeader, *, resumed: bool) -> None:
        self.seen.append(("started", header.id, resumed))

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        self.seen.append(("finished", header.id, status))

    def task_finished(
        self, endpoint: AdapterEndpoint, action: TaskAction, status: TaskStatus, seconds: float
    ) -> None:
        self.seen.append(("task", endpoint.infrastructure_template_id, action, status, seconds))

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        self.seen.append(("error", endpoint.infrastructure_template_id, kind, status_code))

    def fenced_writes_refused(self, count: int) -> None:
        self.seen.append(("fenced", count))
