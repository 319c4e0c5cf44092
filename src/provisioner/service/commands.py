"""What users and pipelines can ask provisioner to do: deploy, undeploy, cancel, retry.

Each request is planned as a pure function of the request and of the release as one value
(``ReleaseState``), outside any transaction; the store then writes the operation only if the
release is still what was planned against, and the request is planned again otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from provisioner.domain.descriptor import DeploymentUnit, parse_descriptor
from provisioner.domain.plan import (
    Plan,
    dependency_problems,
    plan_deploy,
    plan_retry,
    plan_undeploy,
)
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskStatus,
)
from provisioner.engine.ports import AdapterDirectory, ComponentState, OperationHeader
from provisioner.errors import (
    ConflictError,
    InvalidDescriptorError,
    InvalidRequestError,
    NotFoundError,
    OperationActiveError,
    Problem,
    ReleaseChangedError,
)
from provisioner.offload import offload
from provisioner.service.ids import new_operation_id
from provisioner.service.ports import SubmissionStore, WorkerHandle
from provisioner.service.reads import Reads
from provisioner.store.submissions import NewOperation, ReleaseState
from provisioner.store.views import OperationView

Build = Callable[[ReleaseState | None], NewOperation]
# A release that keeps changing under a request (other requests keep winning) is refused
# rather than planned against forever.
PLANNING_ATTEMPTS = 3


class Commands:
    """Deploy, undeploy, cancel and retry; each answers with the operation as stored."""

    def __init__(
        self,
        *,
        directory: AdapterDirectory,
        submissions: SubmissionStore,
        reads: Reads,
        worker: WorkerHandle,
        clock: Callable[[], datetime],
    ) -> None:
        self._directory = directory
        self._submissions = submissions
        self._reads = reads
        self._worker = worker
        self._clock = clock

    async def deploy(
        self,
        document: object,
        *,
        environment: str | None,
        components: Sequence[str] | None,
        document_size: int = 0,
        principal: str | None = None,
        warnings: Sequence[Problem] = (),
    ) -> OperationView:
        """Validate the descriptor, plan and store a DEPLOY operation; it runs in background.

        ``warnings`` (what reading the request noticed) are shown with the operation."""
        unit, env = await offload(document_size, read_unit, document, environment, self._directory)
        selected = _selection(components, "deploy")
        descriptor_json = await offload(
            document_size, json.dumps, unit.document, ensure_ascii=False
        )
        rows = (
            ComponentState(
                unit.id, True, infrastructure_template_id=unit.infrastructure_template_id
            ),
            *(
                ComponentState(
                    c.id,
                    False,
                    infrastructure_template_id=c.infrastructure_template_id,
                    depends_on=c.depends_on,
                )
                for c in unit.components
            ),
        )
        full_plan = plan_deploy(unit) if selected is None else None

        def build(release: ReleaseState | None) -> NewOperation:
            plan = full_plan or plan_deploy(
                unit, selected=selected, deployed=_deployed(release).keys()
            )
            return NewOperation(
                header=self._header(
                    OperationType.DEPLOY, unit.id, env, unit.version, principal=principal
                ),
                plan=plan,
                descriptor_json=descriptor_json,
                requested_components=selected,
                components=rows,
                warnings=tuple(warnings),
            )

        # A full deploy does not depend on what is deployed; a subset does.
        return await self._submit(unit.id, env, build, against_release=selected is not None)

    async def undeploy(
        self,
        deployment_unit_id: str,
        *,
        environment: str,
        remove_data: bool,
        components: Sequence[str] | None,
        principal: str | None = None,
    ) -> OperationView:
        """Plan and store an UNDEPLOY of what is deployed (or of ``components``)."""
        selected = _selection(components, "undeploy")

        def build(release: ReleaseState | None) -> NewOperation:
            assert release is not None
            return NewOperation(
                header=self._header(
                    OperationType.UNDEPLOY,
                    deployment_unit_id,
                    environment,
                    release.version,
                    remove_data=remove_data,
                    principal=principal,
                ),
                plan=self._undeploy_plan(release, selected),
                requested_components=selected,
            )

        return await self._submit(deployment_unit_id, environment, build)

    def _undeploy_plan(self, release: ReleaseState, selected: Sequence[str] | None) -> Plan:
        unit_id, environment = release.deployment_unit_id, release.environment
        # CORRUPT components count: undeploying them is how a broken release is removed.
        deployed = {
            cid: state
            for cid, state in release.components.items()
            if not state.is_system and state.status is not ComponentStatus.NOT_DEPLOYED
        }
        system = release.components.get(unit_id)
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
            Problem("components", unregistered(step.infrastructure_template_id, environment))
            for step in plan.steps
            if step.infrastructure_template_id is not None
            and self._directory.resolve(step.infrastructure_template_id, environment) is None
        ]
        if problems:
            raise InvalidRequestError(
                "some components have no Tech Adapter to undeploy them", problems
            )
        return plan

    async def cancel(self, operation_id: str, *, principal: str | None = None) -> OperationView:
        """Cancel an active operation (409 if it already ended)."""
        status = await self._submissions.request_cancel(
            operation_id, now=self._clock(), principal=principal
        )
        if status is OperationStatus.RUNNING:
            self._worker.cancel(operation_id)
        return await self._reads.operation(operation_id)

    async def retry(self, operation_id: str, *, principal: str | None = None) -> OperationView:
        """A new operation of the same type and descriptor for the tasks that did not succeed."""
        original = await self._reads.operation(operation_id)
        if original.status.is_active:
            raise ConflictError(f"operation {operation_id} is still {original.status}")
        remaining = [task for task in original.tasks if task.status is not TaskStatus.SUCCEEDED]
        if not remaining:
            raise ConflictError(f"every task of operation {operation_id} succeeded")
        document = (
            await self._reads.document(operation_id)
            if original.type is OperationType.DEPLOY
            else None
        )
        plan = plan_retry(remaining)
        kept = sorted({step.component_id for step in plan.steps} - {original.deployment_unit_id})

        def build(release: ReleaseState | None) -> NewOperation:
            assert release is not None
            # The plan repeats part of the original one: valid only on the release the original
            # left behind. Any operation that has run since may have changed it.
            if (release.last_started_operation_id or "") > operation_id:
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
                header=self._header(
                    original.type,
                    original.deployment_unit_id,
                    original.environment,
                    original.version,
                    remove_data=original.remove_data,
                    principal=principal,
                ),
                plan=plan,
                descriptor_json=json.dumps(document) if document is not None else None,
                requested_components=tuple(kept),
                retry_of=operation_id,
            )

        return await self._submit(original.deployment_unit_id, original.environment, build)

    async def _submit(
        self, unit_id: str, environment: str, build: Build, *, against_release: bool = True
    ) -> OperationView:
        """Plan (against the release as it is now) and store; plan again if it moved on."""
        for attempt in range(1, PLANNING_ATTEMPTS + 1):
            release = (
                await self._submissions.release_state(unit_id, environment)
                if against_release
                else None
            )
            if release is not None and release.active_operation_id is not None:
                # Refused before planning: what is deployed is about to change.
                raise OperationActiveError(unit_id, environment, release.active_operation_id)
            try:
                view = await self._submissions.submit(build(release), based_on=release)
            except ReleaseChangedError:
                if attempt == PLANNING_ATTEMPTS:
                    raise
                continue
            self._worker.wake()
            return view
        raise AssertionError("unreachable")

    def _header(
        self,
        type_: OperationType,
        unit_id: str,
        environment: str,
        version: str | None,
        *,
        remove_data: bool = False,
        principal: str | None,
    ) -> OperationHeader:
        return OperationHeader(
            id=new_operation_id(),
            type=type_,
            deployment_unit_id=unit_id,
            environment=environment,
            version=version,
            remove_data=remove_data,
            created_at=self._clock(),
            requested_by=principal,
        )


def read_unit(
    document: object, environment: str | None, directory: AdapterDirectory
) -> tuple[DeploymentUnit, str]:
    """The deployment unit and its target environment, or every problem of the descriptor at
    once (``InvalidDescriptorError``): structure, dependencies, adapters, environment."""
    parsed = parse_descriptor(document)
    unit = parsed.unit
    problems = [*parsed.problems, *dependency_problems(unit)]
    env = environment or unit.environment
    if env is None:
        problems.append(Problem("environment", "is required (in the request or the descriptor)"))
    elif environment is not None and unit.environment not in (None, environment):
        problems.append(
            Problem(
                "environment",
                f"the request targets {environment!r} but the descriptor is for "
                f"{unit.environment!r}",
            )
        )
    if env is not None:
        problems.extend(_adapter_problems(unit, env, directory))
    if problems or env is None:
        raise InvalidDescriptorError("the descriptor is invalid", problems)
    return unit, env


def _adapter_problems(
    unit: DeploymentUnit, environment: str, directory: AdapterDirectory
) -> list[Problem]:
    templates = [("descriptor.infrastructureTemplateId", unit.infrastructure_template_id)]
    templates += [
        (
            f"descriptor.components[{c.position}].infrastructureTemplateId",
            c.infrastructure_template_id,
        )
        for c in unit.components
    ]
    return [
        Problem(path, unregistered(template, environment))
        for path, template in templates
        if template and directory.resolve(template, environment) is None
    ]


def unregistered(template_id: str, environment: str) -> str:
    return f"no Tech Adapter is registered for {template_id!r} in environment {environment!r}"


def _selection(components: Sequence[str] | None, verb: str) -> tuple[str, ...] | None:
    if components is None:
        return None
    if not components:
        raise InvalidRequestError(
            f"nothing to {verb}", [Problem("components", "must list at least one component")]
        )
    return tuple(dict.fromkeys(components))


def _deployed(release: ReleaseState | None) -> dict[str, ComponentState]:
    if release is None:
        return {}
    return {
        cid: state
        for cid, state in release.components.items()
        if state.status is ComponentStatus.DEPLOYED
    }
