"""Deployment plans: which steps an operation runs and what each waits for.

The system (the deployment unit itself) is a step every component depends on: it runs first on
deploy and last on undeploy. ``dependsOn`` orders the components; undeploy runs the reversed
graph. networkx stays inside this module.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import networkx as nx

from provisioner.domain.descriptor import DeploymentUnit
from provisioner.domain.status import TaskAction
from provisioner.errors import InvalidRequestError, Problem

MAX_CYCLE_SHOWN = 20  # components named in a cycle's message


@dataclass(frozen=True, slots=True)
class Step:
    """One task of a plan: a component (or the system) and the steps it waits for."""

    component_id: str
    action: TaskAction
    depends_on: tuple[str, ...]
    infrastructure_template_id: str | None
    is_system: bool


STEP_FIELDS = frozenset(Step.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps of an operation, in a topological order."""

    steps: tuple[Step, ...]

    def __len__(self) -> int:
        return len(self.steps)


class DeployedComponent(Protocol):
    """A component as last provisioned: what undeploy needs to order it."""

    @property
    def infrastructure_template_id(self) -> str | None: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...


def dependency_problems(unit: DeploymentUnit, *, path: str = "descriptor") -> list[Problem]:
    """Unknown ``dependsOn`` ids and dependency cycles, each named with its components."""
    by_id = {component.id: component for component in unit.components}
    problems: list[Problem] = []
    # Edges point from a component to what it depends on, the way cycles are reported.
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(by_id)
    for component in unit.components:
        for dep_index, dependency in enumerate(component.depends_on):
            if dependency in by_id:
                graph.add_edge(component.id, dependency)
            else:
                problems.append(
                    Problem(
                        f"{path}.components[{component.position}].dependsOn[{dep_index}]",
                        f"unknown component id {dependency!r}",
                    )
                )
    for members in nx.strongly_connected_components(graph):
        if len(members) == 1 and not any(graph.has_edge(m, m) for m in members):
            continue
        cycle = [edge[0] for edge in nx.find_cycle(graph.subgraph(members))]
        # Start the story at the cycle's first component in descriptor order, and point there.
        first = min(range(len(cycle)), key=lambda i: by_id[cycle[i]].position)
        cycle = cycle[first:] + cycle[:first]
        problems.append(
            Problem(f"{path}.components[{by_id[cycle[0]].position}].dependsOn", _cycle(cycle))
        )
    return problems


def _cycle(cycle: list[str]) -> str:
    """The cycle as a story; a long one is shortened (each id may be 512 characters)."""
    long = len(cycle) > MAX_CYCLE_SHOWN
    names = [*cycle[: MAX_CYCLE_SHOWN - 1], "...", cycle[-1]] if long else cycle
    story = "dependency cycle: " + " -> ".join([*names, cycle[0]]) + " (-> means depends on)"
    return f"{story}: {len(cycle)} components" if long else story


def plan_deploy(
    unit: DeploymentUnit,
    *,
    selected: Collection[str] | None = None,
    deployed: Collection[str] = (),
) -> Plan:
    """Plan the deployment of ``unit`` (or of the ``selected`` components only).

    A selected component may depend only on components that are also selected or already
    deployed; otherwise ``InvalidRequestError`` lists each offending dependency.
    """
    by_id = {component.id: component for component in unit.components}
    chosen = set(by_id) if selected is None else set(selected)
    already = frozenset(deployed)  # looked up once per dependency: a set, not a list
    problems = [
        Problem("components", f"{component_id!r} is not a component of {unit.id!r}")
        for component_id in sorted(chosen - set(by_id))
    ]
    for component_id in sorted(chosen & set(by_id)):
        problems.extend(
            Problem(
                "components",
                f"{component_id!r} depends on {dependency!r}, which is neither listed nor deployed",
            )
            for dependency in by_id[component_id].depends_on
            if dependency not in chosen and dependency not in already
        )
    if problems:
        raise InvalidRequestError("the components cannot be deployed on their own", problems)
    graph = _graph(unit.id)
    for component in unit.components:
        if component.id in chosen:
            inside = [dep for dep in component.depends_on if dep in chosen]
            graph.add_node(component.id)
            graph.add_edges_from((dep, component.id) for dep in inside or [unit.id])
    steps = [
        Step(
            component_id=node,
            action=TaskAction.PROVISION,
            depends_on=tuple(graph.predecessors(node)),
            infrastructure_template_id=(
                unit.infrastructure_template_id
                if node == unit.id
                else by_id[node].infrastructure_template_id
            ),
            is_system=node == unit.id,
        )
        for node in _ordered(graph, [unit.id, *by_id])
    ]
    return Plan(tuple(steps))


def plan_undeploy(
    unit_id: str,
    *,
    system_template: str | None,
    system_deployed: bool,
    deployed: Mapping[str, DeployedComponent],
    selected: Collection[str] | None = None,
) -> Plan:
    """Plan the undeployment of the deployed components (all, or the ``selected`` ones).

    Components are unprovisioned before what they depend on; the system goes last, and only
    when no component remains deployed afterwards. Leaving deployed a component that depends on
    one being removed is refused with ``InvalidRequestError``.
    """
    chosen = set(deployed) if selected is None else set(selected)
    problems = [
        Problem("components", f"{component_id!r} is not deployed")
        for component_id in sorted(chosen - set(deployed))
    ]
    for component_id in sorted(set(deployed) - chosen):
        problems.extend(
            Problem(
                "components",
                f"{component_id!r} stays deployed but depends on {dependency!r}",
            )
            for dependency in deployed[component_id].depends_on
            if dependency in chosen
        )
    if problems:
        raise InvalidRequestError("the components cannot be undeployed on their own", problems)
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(component_id for component_id in deployed if component_id in chosen)
    for component_id in list(graph.nodes):
        for dependency in deployed[component_id].depends_on:
            if dependency in chosen:
                graph.add_edge(component_id, dependency)
    include_system = system_deployed and chosen >= set(deployed)
    if include_system:
        graph.add_edges_from((node, unit_id) for node in list(graph.nodes))
        graph.add_node(unit_id)
    steps = [
        Step(
            component_id=node,
            action=TaskAction.UNPROVISION,
            depends_on=tuple(graph.predecessors(node)),
            infrastructure_template_id=(
                system_template if node == unit_id else deployed[node].infrastructure_template_id
            ),
            is_system=node == unit_id,
        )
        for node in _ordered(graph, [*deployed, unit_id])
    ]
    return Plan(tuple(steps))


def plan_retry(steps: Iterable[Step]) -> Plan:
    """A plan of ``steps`` (those of an operation that did not succeed), each waiting only for
    the others of them it waited for: what succeeded stays done."""
    kept = list(steps)
    ids = {step.component_id for step in kept}
    return Plan(
        tuple(
            Step(
                component_id=step.component_id,
                action=step.action,
                depends_on=tuple(dep for dep in step.depends_on if dep in ids),
                infrastructure_template_id=step.infrastructure_template_id,
                is_system=step.is_system,
            )
            for step in kept
        )
    )


def _graph(system_id: str) -> nx.DiGraph:
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_node(system_id)
    return graph


def _ordered(graph: nx.DiGraph, preference: Iterable[str]) -> list[str]:
    """A topological order that follows the descriptor's order where it is free to."""
    rank = {node: position for position, node in enumerate(preference)}
    return list(nx.lexicographical_topological_sort(graph, key=lambda node: rank[node]))
