"""Dry runs: what a request would do, as the plan it would store, compared with the release.

The plan is the one ``Commands`` builds for the real request (every check included), stopped
short of the store; each step says how it would change its component (``domain.changes``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.domain.changes import Change, change_of, own_part
from provisioner.domain.descriptor import DeploymentUnit
from provisioner.domain.status import ComponentStatus, OperationType, TaskAction
from provisioner.errors import Problem
from provisioner.store.submissions import NewOperation, ReleaseState

Documents = Callable[[str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step of a dry run's plan and what it would change."""

    component_id: str
    action: TaskAction
    depends_on: tuple[str, ...]  # the steps of this plan that run before it
    change: Change
    current_status: ComponentStatus
    current_version: str | None
    target_version: str | None


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a deploy or undeploy would do; nothing was stored and no adapter was called."""

    type: OperationType
    deployment_unit_id: str
    environment: str
    version: str | None
    steps: tuple[PlannedStep, ...]
    warnings: tuple[Problem, ...] = ()


async def preview(
    new: NewOperation,
    release: ReleaseState,
    *,
    unit: DeploymentUnit | None,
    documents: Documents,
) -> DryRun:
    """The dry run of ``new`` (planned against ``release``); ``unit`` is the descriptor of a
    deploy, and ``documents`` reads the descriptor an earlier operation deployed."""
    versions = _target_versions(unit)
    loaded: dict[str, Mapping[str, Any] | None] = {}
    steps = []
    for step in new.plan.steps:
        state = release.components.get(step.component_id)
        current = state.status if state is not None else ComponentStatus.NOT_DEPLOYED
        target = versions.get(step.component_id) if step.action is TaskAction.PROVISION else None
        same_version = state is not None and state.version == target
        same_content = False
        source = state.last_provisioned_operation_id if state is not None else None
        if unit is not None and same_version and current is ComponentStatus.DEPLOYED and source:
            if source not in loaded:
                loaded[source] = await documents(source)
            before = loaded[source]
            same_content = before is not None and own_part(
                before, step.component_id, is_system=step.is_system
            ) == own_part(unit.document, step.component_id, is_system=step.is_system)
        steps.append(
            PlannedStep(
                component_id=step.component_id,
                action=step.action,
                depends_on=step.depends_on,
                change=change_of(
                    step.action, current, same_version=same_version, same_content=same_content
                ),
                current_status=current,
                current_version=state.version if state is not None else None,
                target_version=target,
            )
        )
    header = new.header
    return DryRun(
        type=header.type,
        deployment_unit_id=header.deployment_unit_id,
        environment=header.environment,
        version=header.version,
        steps=tuple(steps),
        warnings=new.warnings,
    )


def _target_versions(unit: DeploymentUnit | None) -> dict[str, str | None]:
    if unit is None:
        return {}
    versions: dict[str, str | None] = {unit.id: unit.version}
    versions.update((component.id, component.version) for component in unit.components)
    return versions
