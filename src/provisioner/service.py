"""Use cases shared by the REST API and the CLI: deploy, undeploy, cancel, retry, read state,
and the pass-through adapter calls (validate, updateacl, reverse provisioning)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from provisioner.adapters.client import (
    ReverseProvisioningOutcome,
    TechAdapterClient,
    ValidationOutcome,
)
from provisioner.domain.descriptor import DeploymentUnit, parse_descriptor
from provisioner.domain.plan import (
    DeployedComponent,
    Plan,
    Step,
    dependency_problems,
    plan_deploy,
    plan_undeploy,
)
from provisioner.domain.privacy import without_private
from provisioner.domain.rendering import DescriptorTexts
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
)
from provisioner.engine.ports import (
    AdapterDirectory,
    AdapterEndpoint,
    AdapterRequest,
    ProvisioningResult,
)
from provisioner.engine.worker import Worker
from provisioner.errors import (
    AdapterError,
    ConflictError,
    InvalidDescriptorError,
    InvalidRequestError,
    NotFoundError,
    Problem,
)
from provisioner.store.queries import Queries
from provisioner.store.submissions import (
    ComponentSeed,
    NewOperation,
    ReleaseSnapshot,
    Submissions,
    submitted_view,
)
from provisioner.store.views import (
    ComponentView,
    EventView,
    OperationView,
    Page,
    ReleaseSummary,
    ReleaseView,
)

# Descriptors above this size are validated and serialised in a worker thread, off the loop.
_THREAD_BYTES = 256 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ComponentValidation:
    component_id: str
    valid: bool
    errors: list[str]


class DeploymentService:
    """What users and pipelines can ask of provisioner."""

    def __init__(
        self,
        *,
        directory: AdapterDirectory,
        submissions: Submissions,
        queries: Queries,
        adapters: TechAdapterClient,
        worker: Worker | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._directory = directory
        self._submissions = submissions
        self._queries = queries
        self._adapters = adapters
        self._worker = worker
        self._clock = clock

    # --- deploy / undeploy ------------------------------------------------------------------

    async def deploy(
        self,
        document: object,
        *,
        environment: str | None,
        components: Sequence[str] | None,
        document_size: int = 0,
    ) -> OperationView:
        """Validate the descriptor, plan and store a DEPLOY operation; it runs in background."""
        unit, env = await _sized(document_size, self._validated, document, environment)
        if components is not None and not components:
            raise InvalidRequestError(
                "nothing to deploy", [Problem("components", "must list at least one component")]
            )
        selected = list(dict.fromkeys(components)) if components is not None else None
        descriptor_json = await _encode(unit.document, document_size)
        full_plan = plan_deploy(unit) if selected is None else None
        operation_id, now = new_operation_id(), self._clock()
        seeds = [
            ComponentSeed(unit.id, True, unit.infrastructure_template_id, ()),
            *(
                ComponentSeed(c.id, False, c.infrastructure_template_id, c.depends_on)
                for c in unit.components
            ),
        ]

        def planner(snapshot: ReleaseSnapshot) -> NewOperation:
            plan = full_plan or plan_deploy(
                unit,
                selected=selected,
                deployed=[
                    cid
                    for cid, state in snapshot.components.items()
                    if state.status is ComponentStatus.DEPLOYED
                ],
            )
            return NewOperation(
                id=operation_id,
                type=OperationType.DEPLOY,
                deployment_unit_id=unit.id,
                environment=env,
                version=unit.version,
                remove_data=False,
                plan=plan,
                created_at=now,
                descriptor_json=descriptor_json,
                requested_components=selected,
                seeds=seeds,
            )

        return self._submitted(await self._submissions.submit(unit.id, env, planner))

    async def undeploy(
        self,
        deployment_unit_id: str,
        *,
        environment: str,
        remove_data: bool,
        components: Sequence[str] | None,
    ) -> OperationView:
        """Plan and store an UNDEPLOY of what is deployed (or of ``components``)."""
        if components is not None and not components:
            raise InvalidRequestError(
                "nothing to undeploy", [Problem("components", "must list at least one component")]
            )
        selected = list(dict.fromkeys(components)) if components is not None else None
        operation_id, now = new_operation_id(), self._clock()

        def planner(snapshot: ReleaseSnapshot) -> NewOperation:
            plan = self._undeploy_plan(deployment_unit_id, environment, snapshot, selected)
            return NewOperation(
                id=operation_id,
                type=OperationType.UNDEPLOY,
                deployment_unit_id=deployment_unit_id,
                environment=environment,
                version=snapshot.version,
                remove_data=remove_data,
                plan=plan,
                created_at=now,
                requested_components=selected,
            )

        return self._submitted(
            await self._submissions.submit(deployment_unit_id, environment, planner)
        )

    def _undeploy_plan(
        self,
        unit_id: str,
        environment: str,
        snapshot: ReleaseSnapshot,
        selected: Sequence[str] | None,
    ) -> Plan:
        deployed = {
            cid: DeployedComponent(cid, state.infrastructure_template_id, state.depends_on)
            for cid, state in snapshot.components.items()
            if not state.is_system and state.status is not ComponentStatus.NOT_DEPLOYED
        }
        system = snapshot.components.get(unit_id)
        system_deployed = system is not None and system.status is not ComponentStatus.NOT_DEPLOYED
        if not deployed and not system_deployed:
            raise NotFoundError(f"nothing of {unit_id!r} is deployed in {environment!r}")
        plan = plan_undeploy(
            unit_id,
            system_template=system.infrastructure_template_id if system else None,
            system_deployed=system_deployed,
            deployed=deployed,
            selected=selected,
        )
        problems = [
            Problem("components", _unregistered(step.infrastructure_template_id, environment))
            for step in plan.steps
            if step.infrastructure_template_id is not None
            and self._directory.resolve(step.infrastructure_template_id, environment) is None
        ]
        if problems:
            raise InvalidRequestError(
                "some components have no Tech Adapter to undeploy them", problems
            )
        return plan

    def _validated(self, document: object, environment: str | None) -> tuple[DeploymentUnit, str]:
        """Every problem of the descriptor at once: structure, dependencies, adapters, env."""
        parsed = parse_descriptor(document)
        unit = parsed.unit
        problems = [*parsed.problems, *dependency_problems(unit)]
        env = environment or unit.environment
        if env is None:
            problems.append(
                Problem("environment", "is required (in the request or the descriptor)")
            )
        elif environment is not None and unit.environment not in (None, environment):
            problems.append(
                Problem(
                    "environment",
                    f"the request targets {environment!r} but the descriptor is for "
                    f"{unit.environment!r}",
                )
            )
        if env is not None:
            problems.extend(self._adapter_problems(unit, env))
        if problems or env is None:
            raise InvalidDescriptorError("the descriptor is invalid", problems)
        return unit, env

    def _adapter_problems(self, unit: DeploymentUnit, environment: str) -> list[Problem]:
        problems = []
        if unit.infrastructure_template_id and not self._directory.resolve(
            unit.infrastructure_template_id, environment
        ):
            problems.append(
                Problem(
                    "descriptor.infrastructureTemplateId",
                    _unregistered(unit.infrastructure_template_id, environment),
                )
            )
        problems.extend(
            Problem(
                f"descriptor.components[{c.position}].infrastructureTemplateId",
                _unregistered(c.infrastructure_template_id, environment),
            )
            for c in unit.components
            if c.infrastructure_template_id
            and self._directory.resolve(c.infrastructure_template_id, environment) is None
        )
        return problems

    def _submitted(self, new: NewOperation) -> OperationView:
        """Wake the local worker; answer with the operation as it was stored."""
        if self._worker is not None:
            self._worker.wake()
        return submitted_view(new)

    # --- cancel / retry ---------------------------------------------------------------------

    async def cancel(self, operation_id: str) -> OperationView:
        """Cancel an active operation (409 if it already ended)."""
        status = await self._submissions.request_cancel(operation_id, now=self._clock())
        if status == OperationStatus.RUNNING and self._worker is not None:
            self._worker.cancel(operation_id)
        return await self.operation(operation_id)

    async def retry(self, operation_id: str) -> OperationView:
        """A new operation of the same type and descriptor for the tasks that did not succeed."""
        original = await self.operation(operation_id)
        if OperationStatus(original.status).is_active:
            raise ConflictError(f"operation {operation_id} is still {original.status}")
        remaining = [task for task in original.tasks if task.status != TaskStatus.SUCCEEDED]
        if not remaining:
            raise ConflictError(f"every task of operation {operation_id} succeeded")
        document = (
            await self._queries.document(operation_id)
            if original.type == OperationType.DEPLOY
            else None
        )
        kept = {task.component_id for task in remaining}
        steps = tuple(
            Step(
                component_id=task.component_id,
                action=TaskAction(task.action),
                depends_on=tuple(dep for dep in task.depends_on if dep in kept),
                infrastructure_template_id=task.infrastructure_template_id,
                is_system=task.is_system,
            )
            for task in remaining
        )
        new_id, now = new_operation_id(), self._clock()

        def planner(snapshot: ReleaseSnapshot) -> NewOperation:
            # The plan repeats part of the original one: valid only on the release the original
            # left behind. Any operation that has run since may have changed it.
            if snapshot.ran_since(operation_id):
                raise InvalidRequestError(
                    "cannot retry",
                    [
                        Problem(
                            "operation",
                            f"another operation has run on this release since {operation_id}; "
                            "submit a new deploy or undeploy instead",
                        )
                    ],
                )
            return NewOperation(
                id=new_id,
                type=OperationType(original.type),
                deployment_unit_id=original.deployment_unit_id,
                environment=original.environment,
                version=original.version,
                remove_data=original.remove_data,
                plan=Plan(steps),
                created_at=now,
                descriptor_json=json.dumps(document) if document is not None else None,
                requested_components=sorted(kept - {original.deployment_unit_id}),
                retry_of=operation_id,
            )

        return self._submitted(
            await self._submissions.submit(
                original.deployment_unit_id, original.environment, planner
            )
        )

    # --- reads ------------------------------------------------------------------------------

    async def operation(self, operation_id: str) -> OperationView:
        view = await self._queries.operation(operation_id)
        if view is None:
            raise NotFoundError(f"operation {operation_id} does not exist")
        return view

    async def operations(
        self,
        *,
        deployment_unit_id: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[OperationView]:
        return await self._queries.operations(
            deployment_unit_id=deployment_unit_id,
            environment=environment,
            status=status,
            limit=limit,
            cursor=cursor,
        )

    async def events(
        self, operation_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[EventView]:
        await self.operation(operation_id)
        return await self._queries.events(operation_id, after=after, limit=limit)

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView:
        view = await self._queries.release(deployment_unit_id, environment)
        if view is None:
            raise NotFoundError(
                f"no operation was ever submitted for {deployment_unit_id!r} in {environment!r}"
            )
        return view

    async def deployed_descriptor(self, release: ReleaseView) -> dict[str, Any] | None:
        """The release's last deployed descriptor with public info only (no privateInfo)."""
        if release.descriptor_operation_id is None:
            return None
        document = await self._queries.document(release.descriptor_operation_id)
        if document is None:
            return None
        return _public_descriptor(document, release)

    async def component(
        self, deployment_unit_id: str, environment: str, component_id: str
    ) -> ComponentView:
        release = await self.release(deployment_unit_id, environment)
        for component in release.components:
            if component.component_id == component_id:
                return component
        raise NotFoundError(
            f"{deployment_unit_id!r} has no component {component_id!r} in {environment!r}"
        )

    async def releases(
        self, *, environment: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page[ReleaseSummary]:
        return await self._queries.releases(
            environment=environment, status=status, limit=limit, cursor=cursor
        )

    # --- pass-through adapter calls ---------------------------------------------------------

    async def validate(
        self, document: object, *, environment: str | None, document_size: int = 0
    ) -> list[ComponentValidation]:
        """Ask every component's Tech Adapter to validate the descriptor (nothing is stored)."""
        unit, env = await _sized(document_size, self._validated, document, environment)
        texts = DescriptorTexts(unit.document)
        checks: list[tuple[str, AdapterEndpoint, AdapterRequest]] = []
        if unit.infrastructure_template_id:
            endpoint = self._resolve(unit.infrastructure_template_id, env)
            checks.append((unit.id, endpoint, _request(texts.unit, "DATAPRODUCT_DESCRIPTOR")))
        for component in unit.components:
            endpoint = self._resolve(component.infrastructure_template_id, env)
            text = texts.component(component.id)
            checks.append((component.id, endpoint, _request(text, "COMPONENT_DESCRIPTOR")))

        async def check(
            cid: str, endpoint: AdapterEndpoint, request: AdapterRequest
        ) -> ComponentValidation:
            try:
                async with asyncio.timeout(endpoint.timeout_seconds):
                    outcome = await self._adapters.validate(endpoint, request)
            except (AdapterError, TimeoutError) as exc:
                outcome = ValidationOutcome(False, [getattr(exc, "message", None) or "timed out"])
            return ComponentValidation(cid, outcome.valid, outcome.errors)

        return list(await asyncio.gather(*(check(*item) for item in checks)))

    async def update_acl(
        self, deployment_unit_id: str, environment: str, component_id: str, refs: list[str]
    ) -> ProvisioningResult:
        """Grant ``refs`` access to a deployed component through its Tech Adapter."""
        component = await self.component(deployment_unit_id, environment, component_id)
        if component.status != ComponentStatus.DEPLOYED or component.last_operation is None:
            raise ConflictError(f"component {component_id!r} is {component.status}, not DEPLOYED")
        release = await self.release(deployment_unit_id, environment)
        document = (
            await self._queries.document(release.descriptor_operation_id)
            if release.descriptor_operation_id
            else None
        )
        if document is None or component.infrastructure_template_id is None:
            raise ConflictError(f"the descriptor of {component_id!r} is not available")
        endpoint = self._resolve(component.infrastructure_template_id, environment)
        text = DescriptorTexts(document).component(component_id)
        request = json.dumps(
            {"descriptorKind": "COMPONENT_DESCRIPTOR", "descriptor": text.text, "removeData": False}
        )
        async with _answered_within(endpoint):
            return await self._adapters.update_acl(
                endpoint,
                refs=refs,
                request=request,
                result=f"provisioned by operation {component.last_operation.operation_id}",
            )

    async def reverse_provision(
        self, *, infrastructure_template_id: str, environment: str, body: dict[str, Any]
    ) -> ReverseProvisioningOutcome:
        endpoint = self._resolve(infrastructure_template_id, environment)
        async with _answered_within(endpoint):
            return await self._adapters.reverse_provision(endpoint, body)

    def _resolve(self, template_id: str, environment: str) -> AdapterEndpoint:
        endpoint = self._directory.resolve(template_id, environment)
        if endpoint is None:
            raise InvalidRequestError(
                "no Tech Adapter",
                [Problem("infrastructureTemplateId", _unregistered(template_id, environment))],
            )
        return endpoint


@asynccontextmanager
async def _answered_within(endpoint: AdapterEndpoint) -> AsyncIterator[None]:
    """The adapter's ``timeoutSeconds`` for a call made on a user's behalf: past it, an
    ``AdapterError`` (a 502 problem) rather than an unexplained failure."""
    try:
        async with asyncio.timeout(endpoint.timeout_seconds):
            yield
    except TimeoutError:
        raise AdapterError(
            f"{endpoint.infrastructure_template_id} did not answer within "
            f"{endpoint.timeout_seconds:g} s (timeoutSeconds)",
            detail={"adapter": endpoint.infrastructure_template_id},
        ) from None


def _request(text: Any, kind: Any) -> AdapterRequest:
    return AdapterRequest(
        action=TaskAction.PROVISION,
        descriptor_kind=kind,
        descriptor=text,
        latest_enriched_descriptor=None,
        remove_data=False,
    )


def _unregistered(template_id: str, environment: str) -> str:
    return f"no Tech Adapter is registered for {template_id!r} in environment {environment!r}"


async def _encode(document: Mapping[str, Any], size_hint: int) -> str:
    return await _sized(size_hint, json.dumps, document, ensure_ascii=False)


async def _sized(size_hint: int, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``function`` called here, or in a worker thread for a large document, so that reading
    one (hundreds of thousands of ids, each checked) does not hold up the event loop."""
    if size_hint > _THREAD_BYTES:
        return await asyncio.to_thread(function, *args, **kwargs)
    return function(*args, **kwargs)


def _public_descriptor(document: Mapping[str, Any], release: ReleaseView) -> dict[str, Any]:
    """The descriptor with each member's public info and no ``privateInfo`` anywhere."""
    public = {view.component_id: view for view in release.components}
    result: dict[str, Any] = without_private(document)
    if release.public_info is not None:
        result["info"] = {"publicInfo": release.public_info}
    components = result.get("components")
    if isinstance(components, list):
        for component in components:
            view = public.get(str(component.get("id"))) if isinstance(component, dict) else None
            if view is not None and view.public_info is not None:
                component["info"] = {"publicInfo": view.public_info}
    return result


class _OperationIds:
    """UUIDv7 (RFC 9562): ordered by creation time, and monotonic within this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms, self._counter = ms, secrets.randbits(11)
            else:
                self._counter += 1
                if self._counter >= 1 << 12:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms, self._counter = self._last_ms + 1, 0
            value = (
                (self._last_ms << 80)
                | (0x7 << 76)
                | (self._counter << 64)
                | (0b10 << 62)
                | secrets.randbits(62)
            )
        return str(uuid.UUID(int=value))


new_operation_id = _OperationIds().next
