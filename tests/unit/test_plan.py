"""Deployment plans (``provisioner.domain.plan``): dependency checks, deploy and undeploy order,
and the rules for operating on a subset of the components."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from provisioner.domain.descriptor import DeploymentUnit, parse_descriptor
from provisioner.domain.plan import (
    MAX_CYCLE_SHOWN,
    DeployedComponent,
    Plan,
    dependency_problems,
    plan_deploy,
    plan_undeploy,
)
from provisioner.domain.status import TaskAction
from provisioner.errors import InvalidRequestError, Problem

UNIT = "urn:u"
SYSTEM_TEMPLATE = "urn:t:system"


def make_unit(
    *components: tuple[str, list[str]], template: str | None = SYSTEM_TEMPLATE
) -> DeploymentUnit:
    """A unit whose components are ``(id, dependsOn)`` pairs, each on template ``t-<id>``."""
    document: dict[str, Any] = {
        "id": UNIT,
        "name": "u",
        "version": "1",
        "components": [
            {"id": cid, "kind": "k", "infrastructureTemplateId": f"t-{cid}", "dependsOn": deps}
            for cid, deps in components
        ],
    }
    if template is not None:
        document["infrastructureTemplateId"] = template
    parsed = parse_descriptor(document)
    assert parsed.problems == ()
    return parsed.unit


def order(plan: Plan) -> list[str]:
    return [step.component_id for step in plan.steps]


def waits(plan: Plan) -> dict[str, set[str]]:
    return {step.component_id: set(step.depends_on) for step in plan.steps}


@dataclass(frozen=True)
class Deployed:
    infrastructure_template_id: str | None
    depends_on: tuple[str, ...]


def deployed(*components: tuple[str, list[str]]) -> dict[str, DeployedComponent]:
    return {cid: Deployed(f"t-{cid}", tuple(deps)) for cid, deps in components}


def cycle_of(problem: Problem) -> list[str]:
    match = re.fullmatch(r"dependency cycle: (.*) \(-> means depends on\)", problem.message)
    assert match, problem.message
    return match.group(1).split(" -> ")


def refused(problems: tuple[Problem, ...]) -> set[str]:
    return {problem.message for problem in problems}


# --- dependency_problems -----------------------------------------------------------------------


def test_a_dag_has_no_dependency_problems() -> None:
    """Components depending on earlier and later ones, without cycles, are fine."""
    unit = make_unit(("a", ["c"]), ("b", ["a", "c"]), ("c", []))

    assert dependency_problems(unit) == []


def test_an_unknown_dependency_is_named_with_its_path() -> None:
    """``dependsOn`` of an id that is not a component is reported at its index."""
    unit = make_unit(("a", []), ("b", ["a", "nowhere"]))

    assert dependency_problems(unit) == [
        Problem("descriptor.components[1].dependsOn[1]", "unknown component id 'nowhere'")
    ]


def test_a_dependency_on_the_unit_itself_is_unknown() -> None:
    """The unit id is not a component: a component cannot list it in ``dependsOn``."""
    unit = make_unit(("a", [UNIT]))

    assert dependency_problems(unit, path="body") == [
        Problem("body.components[0].dependsOn[0]", f"unknown component id {UNIT!r}")
    ]


def test_a_cycle_is_named_in_dependency_order_from_its_first_component() -> None:
    """a -> b -> c -> a, starting at the member that comes first in the descriptor."""
    unit = make_unit(("x", []), ("c", ["a"]), ("a", ["b"]), ("b", ["c"]))

    (problem,) = dependency_problems(unit)

    assert problem.path == "descriptor.components[1].dependsOn"
    assert cycle_of(problem) == ["c", "a", "b", "c"]


def test_a_self_dependency_is_a_cycle() -> None:
    """A component that depends on itself is reported as ``a -> a``."""
    unit = make_unit(("a", []), ("b", ["b"]))

    assert dependency_problems(unit) == [
        Problem(
            "descriptor.components[1].dependsOn",
            "dependency cycle: b -> b (-> means depends on)",
        )
    ]


def test_independent_cycles_are_each_reported() -> None:
    """Two separate cycles and a self-loop give three problems, plus any unknown id."""
    unit = make_unit(
        ("a", ["a"]), ("b", ["c"]), ("c", ["b"]), ("d", ["q"]), ("e", ["f"]), ("f", ["e"])
    )

    problems = dependency_problems(unit)

    cycles = {problem.path: cycle_of(problem) for problem in problems if "cycle" in problem.message}
    assert cycles == {
        "descriptor.components[0].dependsOn": ["a", "a"],
        "descriptor.components[1].dependsOn": ["b", "c", "b"],
        "descriptor.components[4].dependsOn": ["e", "f", "e"],
    }
    assert Problem("descriptor.components[3].dependsOn[0]", "unknown component id 'q'") in problems
    assert len(problems) == 4


def test_a_component_outside_a_cycle_is_not_named_in_it() -> None:
    """d depends on a cycle but is not part of it; only the cycle's members are named."""
    unit = make_unit(("d", ["a"]), ("a", ["b"]), ("b", ["a"]))

    (problem,) = dependency_problems(unit)

    assert cycle_of(problem) == ["a", "b", "a"]
    assert problem.path == "descriptor.components[1].dependsOn"


def test_the_reported_path_names_the_first_component_of_the_reported_cycle() -> None:
    """In {a, b, c} with a->b, b->c, c->b, c->a, the path's component starts the cycle named."""
    unit = make_unit(("a", ["b"]), ("b", ["c"]), ("c", ["b", "a"]))

    (problem,) = dependency_problems(unit)

    index = int(re.search(r"components\[(\d+)\]", problem.path).group(1))  # type: ignore[union-attr]
    assert cycle_of(problem)[0] == unit.components[index].id


def test_a_long_cycle_is_named_by_its_first_components_and_its_length() -> None:
    """A cycle through 1,000 components names the first ones, the last, and the count, so
    that the problem stays readable (and small: each id may be 512 characters)."""
    ids = [f"c{index}" for index in range(1000)]
    unit = make_unit(*((cid, [ids[(index + 1) % len(ids)]]) for index, cid in enumerate(ids)))

    (problem,) = dependency_problems(unit)

    assert problem.message == (
        "dependency cycle: "
        + " -> ".join([*ids[: MAX_CYCLE_SHOWN - 1], "...", "c999", "c0"])
        + " (-> means depends on): 1000 components"
    )


def test_many_unknown_dependencies_are_each_reported_in_linear_time() -> None:
    """One component depending on 100,000 unknown ids gets 100,000 problems. No clock is read:
    the quadratic reading (11 s for 40,000) would run past the test timeout."""
    document = {
        "id": UNIT,
        "name": "u",
        "version": "1",
        "components": [
            {
                "id": "a",
                "kind": "k",
                "infrastructureTemplateId": "t",
                "dependsOn": [f"nowhere-{index}" for index in range(100_000)],
            }
        ],
    }

    problems = dependency_problems(parse_descriptor(document).unit)

    assert len(problems) == 100_000
    assert problems[-1] == Problem(
        "descriptor.components[0].dependsOn[99999]", "unknown component id 'nowhere-99999'"
    )


# --- plan_deploy -------------------------------------------------------------------------------


def test_the_system_comes_first_and_independent_components_wait_for_it() -> None:
    """Components without dependencies depend on the system step."""
    plan = plan_deploy(make_unit(("a", []), ("b", [])))

    assert order(plan) == [UNIT, "a", "b"]
    assert waits(plan) == {UNIT: set(), "a": {UNIT}, "b": {UNIT}}


def test_a_component_waits_for_its_dependencies_and_so_transitively_for_the_system() -> None:
    """``b`` depends on ``a`` only; ``a`` depends on the system, so ``b`` runs after both."""
    plan = plan_deploy(make_unit(("b", ["a"]), ("a", [])))

    assert waits(plan) == {UNIT: set(), "a": {UNIT}, "b": {"a"}}
    assert order(plan) == [UNIT, "a", "b"]


def test_every_step_is_a_provision_with_its_template() -> None:
    """The system step carries the unit's template; components carry their own."""
    plan = plan_deploy(make_unit(("a", [])))

    assert [
        (s.component_id, s.action, s.infrastructure_template_id, s.is_system) for s in plan.steps
    ] == [
        (UNIT, TaskAction.PROVISION, SYSTEM_TEMPLATE, True),
        ("a", TaskAction.PROVISION, "t-a", False),
    ]


def test_a_unit_without_template_has_a_system_step_without_template() -> None:
    """No unit ``infrastructureTemplateId`` gives a system step whose template is None."""
    plan = plan_deploy(make_unit(("a", []), template=None))

    assert plan.steps[0].infrastructure_template_id is None
    assert plan.steps[0].is_system


def test_a_unit_without_components_plans_the_system_alone() -> None:
    """An empty unit is one step."""
    plan = plan_deploy(make_unit())

    assert order(plan) == [UNIT]
    assert len(plan) == 1


def test_order_follows_the_descriptor_where_dependencies_leave_it_free() -> None:
    """Among ready steps the descriptor order decides; a dependency moves a step later."""
    unit = make_unit(("e", []), ("d", ["b"]), ("c", []), ("b", []), ("a", ["e"]))

    assert order(plan_deploy(unit)) == [UNIT, "e", "c", "b", "d", "a"]


def test_every_step_comes_after_what_it_depends_on() -> None:
    """For a deeper graph each step appears after all of its predecessors."""
    unit = make_unit(
        ("f", ["d", "e"]), ("e", ["c"]), ("d", ["c", "b"]), ("c", ["a"]), ("b", []), ("a", [])
    )

    plan = plan_deploy(unit)

    position = {cid: index for index, cid in enumerate(order(plan))}
    for step in plan.steps:
        assert all(position[dep] < position[step.component_id] for dep in step.depends_on)
    assert position[UNIT] == 0


def test_a_selected_subset_plans_only_those_components_and_the_system() -> None:
    """Deploying ``b`` (whose dependency ``a`` is deployed) runs the system, then ``b``."""
    unit = make_unit(("a", []), ("b", ["a"]), ("c", []))

    plan = plan_deploy(unit, selected=["b"], deployed={"a"})

    assert order(plan) == [UNIT, "b"]
    assert waits(plan) == {UNIT: set(), "b": {UNIT}}


def test_a_selected_dependency_is_waited_for_inside_the_subset() -> None:
    """When ``a`` and ``b`` are both selected, ``b`` waits for ``a``, not the system."""
    unit = make_unit(("a", []), ("b", ["a"]), ("c", []))

    plan = plan_deploy(unit, selected=["b", "a"])

    assert order(plan) == [UNIT, "a", "b"]
    assert waits(plan)["b"] == {"a"}


def test_a_dependency_neither_selected_nor_deployed_is_refused() -> None:
    """Deploying ``b`` alone while ``a`` is not deployed lists the missing dependency."""
    unit = make_unit(("a", []), ("b", ["a"]))

    with pytest.raises(InvalidRequestError) as caught:
        plan_deploy(unit, selected=["b"])

    assert caught.value.problems == (
        Problem("components", "'b' depends on 'a', which is neither listed nor deployed"),
    )


def test_a_selected_id_that_is_not_a_component_is_refused() -> None:
    """Unknown ids in the subset are each reported; so is the unit id itself."""
    unit = make_unit(("a", []))

    with pytest.raises(InvalidRequestError) as caught:
        plan_deploy(unit, selected=["a", "zz", UNIT])

    assert refused(caught.value.problems) == {
        f"'zz' is not a component of {UNIT!r}",
        f"{UNIT!r} is not a component of {UNIT!r}",
    }


def test_all_subset_problems_are_reported_together() -> None:
    """Unknown ids and missing dependencies come in one InvalidRequestError."""
    unit = make_unit(("a", []), ("b", ["a"]), ("c", ["a", "b"]))

    with pytest.raises(InvalidRequestError) as caught:
        plan_deploy(unit, selected=["c", "nope"])

    assert refused(caught.value.problems) == {
        f"'nope' is not a component of {UNIT!r}",
        "'c' depends on 'a', which is neither listed nor deployed",
        "'c' depends on 'b', which is neither listed nor deployed",
    }


def test_a_subset_is_checked_against_many_deployed_components_in_linear_time() -> None:
    """``deployed`` may be a list of 20,000 ids, each looked up once per dependency: as a
    set, not by searching the list (which would run past the test timeout)."""
    ids = [f"c{index}" for index in range(20_000)]
    unit = make_unit(*((cid, ids[index - 1 : index]) for index, cid in enumerate(ids)), ("z", ids))

    plan = plan_deploy(unit, selected=["z"], deployed=ids)

    assert order(plan) == [UNIT, "z"]


def test_an_empty_selection_plans_the_system_alone() -> None:
    """``selected=[]`` is not "everything": only the system step runs."""
    assert order(plan_deploy(make_unit(("a", [])), selected=[])) == [UNIT]


# --- plan_undeploy -----------------------------------------------------------------------------


def test_undeploy_runs_the_reversed_graph_and_the_system_last() -> None:
    """A component is removed before what it depends on; the system waits for everything."""
    components = deployed(("a", []), ("b", ["a"]), ("c", ["b"]))

    plan = plan_undeploy(
        UNIT, system_template=SYSTEM_TEMPLATE, system_deployed=True, deployed=components
    )

    assert order(plan) == ["c", "b", "a", UNIT]
    assert waits(plan) == {"c": set(), "b": {"c"}, "a": {"b"}, UNIT: {"a", "b", "c"}}
    assert all(step.action is TaskAction.UNPROVISION for step in plan.steps)


def test_undeploy_steps_carry_their_templates() -> None:
    """Components keep the template they were provisioned with; the system the one given."""
    plan = plan_undeploy(
        UNIT, system_template=SYSTEM_TEMPLATE, system_deployed=True, deployed=deployed(("a", []))
    )

    assert [(s.component_id, s.infrastructure_template_id, s.is_system) for s in plan.steps] == [
        ("a", "t-a", False),
        (UNIT, SYSTEM_TEMPLATE, True),
    ]


def test_undeploy_order_follows_the_deployed_order_where_free() -> None:
    """Independent components are removed in the order given."""
    components = deployed(("z", []), ("y", []), ("x", ["z"]))

    plan = plan_undeploy(UNIT, system_template=None, system_deployed=True, deployed=components)

    assert order(plan) == ["y", "x", "z", UNIT]


def test_undeploy_without_a_deployed_system_has_no_system_step() -> None:
    """When the system is not deployed, only components are removed."""
    plan = plan_undeploy(
        UNIT, system_template=None, system_deployed=False, deployed=deployed(("a", []))
    )

    assert order(plan) == ["a"]


def test_undeploying_a_subset_keeps_the_system() -> None:
    """The system is removed only when no component remains deployed afterwards."""
    components = deployed(("a", []), ("b", []))

    plan = plan_undeploy(
        UNIT, system_template=None, system_deployed=True, deployed=components, selected=["b"]
    )

    assert order(plan) == ["b"]


def test_undeploying_every_component_by_name_removes_the_system_too() -> None:
    """Selecting all deployed components explicitly is the same as undeploying everything."""
    components = deployed(("a", []), ("b", ["a"]))

    plan = plan_undeploy(
        UNIT, system_template=None, system_deployed=True, deployed=components, selected=["a", "b"]
    )

    assert order(plan) == ["b", "a", UNIT]


def test_undeploy_with_nothing_deployed_but_the_system_removes_the_system() -> None:
    """A unit whose components are all gone still has its system step undeployed."""
    plan = plan_undeploy(UNIT, system_template=SYSTEM_TEMPLATE, system_deployed=True, deployed={})

    assert order(plan) == [UNIT]
    assert plan.steps[0].depends_on == ()


def test_undeploy_ignores_dependencies_on_components_no_longer_deployed() -> None:
    """A dependency on something not deployed adds no wait."""
    components = deployed(("b", ["gone"]))

    plan = plan_undeploy(UNIT, system_template=None, system_deployed=False, deployed=components)

    assert waits(plan) == {"b": set()}


def test_undeploying_a_dependency_of_a_component_staying_deployed_is_refused() -> None:
    """Removing ``a`` while ``b`` (which depends on it) stays is refused, naming both."""
    components = deployed(("a", []), ("b", ["a"]), ("c", ["a"]))

    with pytest.raises(InvalidRequestError) as caught:
        plan_undeploy(
            UNIT, system_template=None, system_deployed=True, deployed=components, selected=["a"]
        )

    assert refused(caught.value.problems) == {
        "'b' stays deployed but depends on 'a'",
        "'c' stays deployed but depends on 'a'",
    }


def test_undeploying_a_component_that_is_not_deployed_is_refused() -> None:
    """A selected id without a deployed component is reported as not deployed."""
    with pytest.raises(InvalidRequestError) as caught:
        plan_undeploy(
            UNIT,
            system_template=None,
            system_deployed=True,
            deployed=deployed(("a", [])),
            selected=["a", "ghost"],
        )

    assert caught.value.problems == (Problem("components", "'ghost' is not deployed"),)


def test_undeploying_a_component_with_its_dependents_is_allowed() -> None:
    """Selecting ``a`` and its dependent ``b`` together removes ``b`` first."""
    components = deployed(("a", []), ("b", ["a"]), ("c", []))

    plan = plan_undeploy(
        UNIT, system_template=None, system_deployed=True, deployed=components, selected=["a", "b"]
    )

    assert order(plan) == ["b", "a"]
    assert waits(plan) == {"b": set(), "a": {"b"}}
