"""What users and pipelines can ask provisioner to do: deploy, undeploy, update a component's
access control, cancel, retry, and (operators) mark a CORRUPT component by hand.

Each request is planned as a pure function of the request and of the release as one value
(``ReleaseState``), outside any transaction; the store then writes the operation only if the
release is still what was planned against, and the request is planned again otherwise.

A deploy or undeploy is first read into a ``_Request`` (the descriptor and its checks, the
policies) and then planned against the release; a dry run takes the same two steps and stops
where the real request would store its operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from provisioner import correlation
from provisioner.domain.descriptor import DeploymentUnit, parse_descriptor
from provisioner.domain.plan import (
    Plan,
    Step,
    dependency_problems,
    plan_deploy,
    plan_retry,
    plan_undeploy,
)
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
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
from provisioner.service.dryrun import DryRun, preview
from provisioner.service.governance import Governance, PolicyRequest
from provisioner.service.ids import new_operation_id
from provisioner.service.ports import (
    PolicyCheck,
    QuietServiceObserver,
    ServiceObserver,
    SubmissionStore,
    WorkerHandle,
)
from provisioner.service.reads import Reads
from provisioner.store.submissions import NewOperation, ReleaseState
from provisioner.store.views import OperationView

Build = Callable[[ReleaseState | None], NewOperation]
# A release that keeps changing under a request (other requests keep winning) is refused
# rather than planned against forever.
PLANNING_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class _Request:
    """A deploy or undeploy read and checked, ready to be planned against the release."""

    deployment_unit_id: str
    environment: str
    build: Build
    against_release: bool = True  # whether the plan depends on what is deployed
    unit: DeploymentUnit | None = None  # a deploy's descriptor


@dataclass(frozen=True, slots=True)
class TargetUnit:
    """A deployment unit and the environment a request targets. ``promoted_from`` is the
    descriptor's own environment when the request targets another one: the request wins, and
    the descriptor sent to adapters says the target."""

    unit: DeploymentUnit
    environment: str
    promoted_from: str | None = None


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
        policies: PolicyCheck | None = None,
        observer: ServiceObserver | None = None,
    ) -> None:
        self._directory = directory
        self._observer = observer or QuietServiceObserver()
        self._submissions = submissions
        self._reads = reads
        self._worker = worker
        self._clock = clock
        self._governance = Governance(policies, self._observer)

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

        ``warnings`` (what reading the request noticed) are kept with the operation, with the
        policies' own."""
        request = await self._deploy_request(
            document,
            environment=environment,
            components=components,
            document_size=document_size,
            principal=principal,
            warnings=warnings,
        )
        return await self._submit(request)

    async def dry_run_deploy(
        self,
        document: object,
        *,
        environment: str | None,
        components: Sequence[str] | None,
        document_size: int = 0,
        principal: str | None = None,
        warnings: Sequence[Problem] = (),
    ) -> DryRun:
        """What ``deploy`` would do, after every check it makes; nothing is stored."""
        request = await self._deploy_request(
            document,
            environment=environment,
            components=components,
            document_size=document_size,
            principal=principal,
            warnings=warnings,
        )
        return await self._dry_run(request)

    async def _deploy_request(
        self,
        document: object,
        *,
        environment: str | None,
        components: Sequence[str] | None,
        document_size: int,
        principal: str | None,
        warnings: Sequence[Problem],
    ) -> _Request:
        target = await offload(document_size, read_target, document, environment, self._directory)
        unit, env = target.unit, target.environment
        selected = _selection(components, "deploy")
        descriptor_json = await offload(
            document_size, json.dumps, unit.document, ensure_ascii=False
        )
        policy_warnings = await self._governance.check(
            PolicyRequest(
                OperationType.DEPLOY,
                env,
                descriptor_json,
                components=selected,
                principal=principal,
            )
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
        detail = _promotion(target)

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
                warnings=(*warnings, *policy_warnings),
                detail=detail,
            )

        # A full deploy does not depend on what is deployed; a subset does.
        return _Request(unit.id, env, build, against_release=selected is not None, unit=unit)

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
        request = await self._undeploy_request(
            deployment_unit_id,
            environment=environment,
            remove_data=remove_data,
            components=components,
            principal=principal,
        )
        return await self._submit(request)

    async def dry_run_undeploy(
        self,
        deployment_unit_id: str,
        *,
        environment: str,
        remove_data: bool,
        components: Sequence[str] | None,
        principal: str | None = None,
    ) -> DryRun:
        """What ``undeploy`` would do, after every check it makes; nothing is stored."""
        request = await self._undeploy_request(
            deployment_unit_id,
            environment=environment,
            remove_data=remove_data,
            components=components,
            principal=principal,
        )
        return await self._dry_run(request)

    async def _undeploy_request(
        self,
        deployment_unit_id: str,
        *,
        environment: str,
        remove_data: bool,
        components: Sequence[str] | None,
        principal: str | None,
    ) -> _Request:
        selected = _selection(components, "undeploy")
        policy_warnings: tuple[Problem, ...] = ()
        release = (
            await self._submissions.release_state(deployment_unit_id, environment)
            if self._governance.enabled
            else None
        )
        # Nothing deployed is a 404 when planned: the policies are not asked about it.
        if release is not None and _anything_deployed(release):
            policy_warnings = await self._governance.check(
                PolicyRequest(
                    OperationType.UNDEPLOY,
                    environment,
                    await self._descriptor_json(release),
                    components=selected,
                    remove_data=remove_data,
                    principal=principal,
                )
            )

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
                warnings=policy_warnings,
            )

        return _Request(deployment_unit_id, environment, build)

    async def _descriptor_json(self, release: ReleaseState) -> str | None:
        """The release's last deployed descriptor, as JSON text, for the policies."""
        if release.descriptor_operation_id is None:
            return None
        document = await self._reads.document(release.descriptor_operation_id)
        return None if document is None else json.dumps(document, ensure_ascii=False)

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
            and not step.is_system
            and self._directory.resolve(step.infrastructure_template_id, environment) is None
        ]
        if problems:
            raise InvalidRequestError(
                "some components have no Tech Adapter to undeploy them", problems
            )
        return plan

    async def update_acl(
        self,
        deployment_unit_id: str,
        environment: str,
        component_id: str,
        refs: Sequence[str],
        *,
        principal: str | None = None,
    ) -> OperationView:
        """Store an UPDATE_ACL operation granting ``refs`` access to a DEPLOYED component; it
        runs in background like a deploy (one task, the component's adapter's updateacl).

        404 if the release or component does not exist, 409 if the component is not
        DEPLOYED, its descriptor is gone, or another operation runs on the release."""
        granted = tuple(dict.fromkeys(refs))
        release = await self._submissions.release_state(deployment_unit_id, environment)
        _refuse_if_active(release)
        source = _acl_target(release, component_id).last_provisioned_operation_id
        if source is None or await self._reads.document(source) is None:
            raise ConflictError(f"the descriptor of {component_id!r} is not available")

        def build(release: ReleaseState | None) -> NewOperation:
            assert release is not None
            component = _acl_target(release, component_id)
            template = component.infrastructure_template_id
            if template is None or self._directory.resolve(template, environment) is None:
                raise InvalidRequestError(
                    "no Tech Adapter",
                    [Problem("infrastructureTemplateId", unregistered(str(template), environment))],
                )
            step = Step(component_id, TaskAction.UPDATE_ACL, (), template, component.is_system)
            return NewOperation(
                header=self._header(
                    OperationType.UPDATE_ACL,
                    deployment_unit_id,
                    environment,
                    release.version,
                    principal=principal,
                    refs=granted,
                ),
                plan=Plan((step,)),
                requested_components=(component_id,),
            )

        return await self._submit(_Request(deployment_unit_id, environment, build))

    async def override(
        self,
        deployment_unit_id: str,
        environment: str,
        component_id: str,
        status: ComponentStatus,
        *,
        reason: str,
        principal: str | None = None,
    ) -> OperationView:
        """An operator marks a CORRUPT component ``status`` (DEPLOYED or NOT_DEPLOYED) after
        fixing its platform by hand: an OVERRIDE operation, with no adapter call, recorded and
        ended at once with the principal and the reason; the release's status follows.

        404 if the component does not exist, 409 if it is not CORRUPT or another operation
        runs on the release."""
        release = await self._submissions.release_state(deployment_unit_id, environment)
        _refuse_if_active(release)
        if component_id not in release.components:
            raise NotFoundError(
                f"component {component_id!r} of {deployment_unit_id!r} is not known in "
                f"{environment!r}"
            )
        header = self._header(
            OperationType.OVERRIDE,
            deployment_unit_id,
            environment,
            release.version,
            principal=principal,
            reason=reason,
        )
        await self._submissions.override(header, component_id, status)
        view = await self._reads.operation(header.id)
        self._observer.operation_submitted(view)
        self._observer.operation_finished(view, view.status)
        return view

    async def cancel(self, operation_id: str, *, principal: str | None = None) -> OperationView:
        """Cancel an active operation (409 if it already ended)."""
        status = await self._submissions.request_cancel(
            operation_id, now=self._clock(), principal=principal
        )
        if status is OperationStatus.RUNNING:
            self._worker.cancel(operation_id)
        view = await self._reads.operation(operation_id)
        if status is not OperationStatus.RUNNING:  # a pending one ended here, never having run
            self._observer.operation_finished(view, status)
        return view

    async def retry(self, operation_id: str, *, principal: str | None = None) -> OperationView:
        """A new operation of the same type and descriptor for the tasks that did not succeed."""
        original = await self._reads.operation(operation_id)
        if original.status.is_active:
            raise ConflictError(f"operation {operation_id} is still {original.status}")
        if original.type not in (OperationType.DEPLOY, OperationType.UNDEPLOY):
            raise ConflictError(
                f"operation {operation_id} is an {original.type}, which is not retried: ask "
                "for it again"
            )
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
        descriptor_json = json.dumps(document) if document is not None else None
        # A retry is a deploy or undeploy like any other: the policies (maybe new since) judge it.
        policy_warnings: tuple[Problem, ...] = ()
        if self._governance.enabled:
            if descriptor_json is None:
                state = await self._submissions.release_state(
                    original.deployment_unit_id, original.environment
                )
                policy_descriptor = await self._descriptor_json(state)
            else:
                policy_descriptor = descriptor_json
            policy_warnings = await self._governance.check(
                PolicyRequest(
                    original.type,
                    original.environment,
                    policy_descriptor,
                    components=kept,
                    remove_data=original.remove_data,
                    principal=principal,
                )
            )

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
                descriptor_json=descriptor_json,
                requested_components=tuple(kept),
                retry_of=operation_id,
                warnings=policy_warnings,
            )

        return await self._submit(
            _Request(original.deployment_unit_id, original.environment, build)
        )

    async def _submit(self, request: _Request) -> OperationView:
        """Plan (against the release as it is now) and store; plan again if it moved on."""
        unit_id, environment = request.deployment_unit_id, request.environment
        for attempt in range(1, PLANNING_ATTEMPTS + 1):
            release = (
                await self._submissions.release_state(unit_id, environment)
                if request.against_release
                else None
            )
            new = _planned(request, release)
            try:
                view = await self._submissions.submit(new, based_on=release)
            except ReleaseChangedError:
                if attempt == PLANNING_ATTEMPTS:
                    raise
                continue
            self._worker.wake()
            self._observer.operation_submitted(view)
            return view
        raise AssertionError("unreachable")

    async def _dry_run(self, request: _Request) -> DryRun:
        """Plan as ``_submit`` does (the release is read to compare with), store nothing."""
        release = await self._submissions.release_state(
            request.deployment_unit_id, request.environment
        )
        new = _planned(request, release)
        return await preview(new, release, unit=request.unit, documents=self._reads.document)

    def _header(
        self,
        type_: OperationType,
        unit_id: str,
        environment: str,
        version: str | None,
        *,
        remove_data: bool = False,
        principal: str | None,
        refs: tuple[str, ...] | None = None,
        reason: str | None = None,
    ) -> OperationHeader:
        # The request asking for it: the calls made for it later carry its id and trace.
        asked = correlation.current()
        return OperationHeader(
            id=new_operation_id(),
            type=type_,
            deployment_unit_id=unit_id,
            environment=environment,
            version=version,
            remove_data=remove_data,
            created_at=self._clock(),
            requested_by=principal,
            request_id=asked.request_id if asked else None,
            trace_id=asked.trace_id if asked else None,
            refs=refs,
            reason=reason,
        )


def _planned(request: _Request, release: ReleaseState | None) -> NewOperation:
    """The operation ``request`` makes on ``release`` (None: planned without it)."""
    if release is not None and release.active_operation_id is not None:
        # Refused before planning: what is deployed is about to change.
        raise OperationActiveError(
            request.deployment_unit_id, request.environment, release.active_operation_id
        )
    return request.build(release)


def read_unit(
    document: object, environment: str | None, directory: AdapterDirectory
) -> tuple[DeploymentUnit, str]:
    """The deployment unit and its target environment (see ``read_target``)."""
    target = read_target(document, environment, directory)
    return target.unit, target.environment


def read_target(
    document: object, environment: str | None, directory: AdapterDirectory
) -> TargetUnit:
    """The deployment unit and its target environment, or every problem of the descriptor at
    once (``InvalidDescriptorError``): structure, dependencies, adapters, environment.

    The request's environment wins over the descriptor's (a release is promoted from one
    environment to the next with the same file), and the unit's descriptor says the target."""
    parsed = parse_descriptor(document)
    unit = parsed.unit
    problems = [*parsed.problems, *dependency_problems(unit)]
    env = environment or unit.environment
    if env is None:
        problems.append(Problem("environment", "is required (in the request or the descriptor)"))
    else:
        problems.extend(_adapter_problems(unit, env, directory))
    if problems or env is None:
        raise InvalidDescriptorError("the descriptor is invalid", problems)
    promoted_from = unit.environment if unit.environment not in (None, env) else None
    if unit.environment != env:
        unit = replace(unit, environment=env, document=_in_environment(unit.document, env))
    return TargetUnit(unit, env, promoted_from)


def _in_environment(document: Any, environment: str) -> dict[str, Any]:
    """The descriptor with ``environment`` set to the target (where it was, or last)."""
    return {**document, "environment": environment}


def _promotion(target: TargetUnit) -> dict[str, Any] | None:
    """What the operation's first event says of a promotion."""
    if target.promoted_from is None:
        return None
    return {
        "environment": target.environment,
        "promotedFrom": target.promoted_from,
        "note": f"the descriptor is for {target.promoted_from!r}; the request's environment "
        f"{target.environment!r} wins and is what the Tech Adapters are sent",
    }


def _adapter_problems(
    unit: DeploymentUnit, environment: str, directory: AdapterDirectory
) -> list[Problem]:
    """Components whose template has no adapter here. The unit's own template is not one of
    them: unregistered, the system step makes no call (every real descriptor names
    ``urn:dmb:itm:dataproduct-provisioner:1``, which no Tech Adapter serves)."""
    templates = [
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


def _refuse_if_active(release: ReleaseState) -> None:
    if release.active_operation_id is not None:
        raise OperationActiveError(
            release.deployment_unit_id, release.environment, release.active_operation_id
        )


def _acl_target(release: ReleaseState, component_id: str) -> ComponentState:
    """The component an ACL update is for: it exists (else 404) and is DEPLOYED (else 409)."""
    component = release.components.get(component_id)
    if component is None or component.is_system:
        raise NotFoundError(
            f"component {component_id!r} of {release.deployment_unit_id!r} is not known in "
            f"{release.environment!r}"
        )
    if component.status is not ComponentStatus.DEPLOYED:
        raise ConflictError(f"component {component_id!r} is {component.status}, not DEPLOYED")
    return component


def _anything_deployed(release: ReleaseState) -> bool:
    return any(
        state.status is not ComponentStatus.NOT_DEPLOYED for state in release.components.values()
    )


def _deployed(release: ReleaseState | None) -> dict[str, ComponentState]:
    if release is None:
        return {}
    return {
        cid: state
        for cid, state in release.components.items()
        if state.status is ComponentStatus.DEPLOYED
    }
