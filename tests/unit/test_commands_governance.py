"""The service's commands with policies, dry runs and promotion, over in-memory fakes of its
ports: what the policies are given and what their verdict does, what a dry run plans (and that
it stores nothing), and a descriptor promoted to the environment a request targets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.domain.changes import Change
from provisioner.domain.status import ComponentStatus, OperationType, TaskAction
from provisioner.errors import (
    InvalidRequestError,
    NotFoundError,
    OperationActiveError,
    PolicyDeniedError,
    Problem,
)
from provisioner.policies import PolicyVerdict
from provisioner.service.commands import Commands
from provisioner.service.governance import PolicyRequest
from provisioner.service.reads import Reads
from tests.support import component, unit
from tests.unit.fakes import T0, FakeDirectory, FakeReads, FakeSubmissions, FakeWorker
from tests.unit.test_service import UNIT, deployed, failed_deploy

DOCUMENT = unit(UNIT, [component("a"), component("b", depends_on=["a"])])


class FakePolicies:
    """The policy port: answers ``verdict`` and keeps every input it was given (decoded)."""

    def __init__(self, verdict: PolicyVerdict | None = None) -> None:
        self.verdict = verdict or PolicyVerdict()
        self.inputs: list[dict[str, Any]] = []

    async def evaluate(self, input_json: str) -> PolicyVerdict:
        self.inputs.append(json.loads(input_json))
        return self.verdict


class Harness:
    def __init__(self, policies: FakePolicies | None = None) -> None:
        self.submissions = FakeSubmissions()
        self.reads = FakeReads()
        self.worker = FakeWorker()
        self.policies = policies
        self.commands = Commands(
            directory=FakeDirectory(),
            submissions=self.submissions,
            reads=Reads(self.reads),
            worker=self.worker,
            clock=lambda: T0,
            policies=policies,
        )


# --- policies ----------------------------------------------------------------------------------


async def test_the_policies_see_the_deploy_and_their_warnings_are_kept() -> None:
    """Their input is the request (descriptor included); their warnings join the loader's."""
    policies = FakePolicies(PolicyVerdict(warnings=(Problem("provisioner.x", "careful"),)))
    harness = Harness(policies)
    loaded = (Problem("descriptor.name", "written twice with the same value"),)
    view = await harness.commands.deploy(
        DOCUMENT, environment=None, components=["a"], principal="alice", warnings=loaded
    )
    assert policies.inputs == [
        {
            "action": "DEPLOY",
            "environment": "development",
            "descriptor": DOCUMENT,
            "components": ["a"],
            "removeData": False,
            "principal": "alice",
        }
    ]
    expected = (*loaded, Problem("provisioner.x", "careful"))
    assert harness.submissions.submitted[-1].warnings == expected
    assert view.warnings == expected


async def test_a_denied_deploy_is_refused_and_nothing_is_submitted() -> None:
    denials = (Problem("provisioner.a", "no"), Problem("provisioner.b", "never"))
    harness = Harness(FakePolicies(PolicyVerdict(denials=denials)))
    with pytest.raises(PolicyDeniedError) as refused:
        await harness.commands.deploy(DOCUMENT, environment=None, components=None)
    assert refused.value.problems == denials
    assert refused.value.message == "refused by 2 policy rules"
    assert harness.submissions.submitted == []
    assert harness.worker.wakes == 0


async def test_an_undeploy_shows_the_policies_the_deployed_descriptor() -> None:
    policies = FakePolicies()
    harness = Harness(policies)
    harness.submissions.release(UNIT, deployed(UNIT), deployed("a"), descriptor_operation_id="op-1")
    harness.reads.documents["op-1"] = DOCUMENT
    await harness.commands.undeploy(
        UNIT, environment="development", remove_data=True, components=None, principal="bob"
    )
    (given,) = policies.inputs
    assert given["action"] == "UNDEPLOY"
    assert given["descriptor"] == DOCUMENT
    assert (given["removeData"], given["principal"], given["components"]) == (True, "bob", None)


async def test_an_undeploy_of_nothing_is_not_found_before_any_policy() -> None:
    """The policies are not asked about a release that has nothing deployed (their input would
    have no descriptor): planning says 404."""
    policies = FakePolicies(PolicyVerdict(denials=(Problem("provisioner.p", "no"),)))
    harness = Harness(policies)
    with pytest.raises(NotFoundError):
        await harness.commands.undeploy(
            UNIT, environment="development", remove_data=False, components=None
        )


async def test_a_retry_is_judged_by_the_policies_as_of_now() -> None:
    """A retry is a deploy like any other: a policy added since the original can refuse it,
    and it sees the components the retry runs."""
    policies = FakePolicies(PolicyVerdict(denials=(Problem("provisioner.freeze", "frozen"),)))
    harness = Harness(policies)
    harness.reads.views["01a"] = failed_deploy()
    harness.reads.documents["01a"] = DOCUMENT
    harness.submissions.release(UNIT, last_started_operation_id="01a")
    with pytest.raises(PolicyDeniedError):
        await harness.commands.retry("01a", principal="carol")
    (given,) = policies.inputs
    assert (given["action"], given["components"], given["principal"]) == (
        "DEPLOY",
        ["b", "c"],
        "carol",
    )
    assert given["descriptor"] == DOCUMENT
    assert harness.submissions.submitted == []


def test_the_policy_input_splices_the_descriptor_text_in_as_it_is() -> None:
    request = PolicyRequest(
        OperationType.UNDEPLOY,
        'q"a',
        '{"id": "x", "n": 100000000000000000000000000001}',
        components=("c",),
        remove_data=True,
    )
    decoded = json.loads(request.input_json())
    assert decoded == {
        "action": "UNDEPLOY",
        "environment": 'q"a',
        "descriptor": {"id": "x", "n": 100000000000000000000000000001},
        "components": ["c"],
        "removeData": True,
        "principal": None,
    }
    assert (
        json.loads(PolicyRequest(OperationType.DEPLOY, "e", None).input_json())["descriptor"]
        is None
    )


# --- promotion ---------------------------------------------------------------------------------


async def test_the_request_s_environment_wins_and_the_descriptor_says_it() -> None:
    """A descriptor for development deployed to qa: the stored descriptor (what adapters are
    sent) says qa, in the place the key had, and the first event says it was promoted."""
    harness = Harness()
    view = await harness.commands.deploy(DOCUMENT, environment="qa", components=None)
    new = harness.submissions.submitted[-1]
    assert view.environment == "qa"
    stored = json.loads(new.descriptor_json or "")
    assert stored["environment"] == "qa"
    assert list(stored) == list(DOCUMENT)
    assert {**stored, "environment": "development"} == DOCUMENT
    assert new.detail is not None
    assert (new.detail["environment"], new.detail["promotedFrom"]) == ("qa", "development")
    assert DOCUMENT["environment"] == "development"  # the caller's document is left alone


async def test_no_promotion_is_noted_when_the_environments_agree() -> None:
    harness = Harness()
    await harness.commands.deploy(DOCUMENT, environment="development", components=None)
    assert harness.submissions.submitted[-1].detail is None


async def test_a_descriptor_without_environment_gets_the_target() -> None:
    document = {key: value for key, value in DOCUMENT.items() if key != "environment"}
    harness = Harness()
    await harness.commands.deploy(document, environment="qa", components=None)
    stored = json.loads(harness.submissions.submitted[-1].descriptor_json or "")
    assert stored["environment"] == "qa"


# --- dry runs ----------------------------------------------------------------------------------


async def test_a_dry_run_stores_nothing_and_plans_what_a_deploy_would() -> None:
    """The plan of the real request, each step compared with the release: nothing submitted,
    the worker not woken; the policies were asked, and their warnings come back."""
    policies = FakePolicies(PolicyVerdict(warnings=(Problem("provisioner.x", "hm"),)))
    harness = Harness(policies)
    dry = await harness.commands.dry_run_deploy(DOCUMENT, environment=None, components=None)
    assert harness.submissions.submitted == []
    assert harness.worker.wakes == 0
    assert len(policies.inputs) == 1
    assert dry.warnings == (Problem("provisioner.x", "hm"),)
    assert (dry.type, dry.deployment_unit_id, dry.environment) == (
        OperationType.DEPLOY,
        UNIT,
        "development",
    )
    assert [(s.component_id, s.depends_on, s.change) for s in dry.steps] == [
        (UNIT, (), Change.CREATE),
        ("a", (UNIT,), Change.CREATE),
        ("b", ("a",), Change.CREATE),
    ]
    assert all(s.current_status is ComponentStatus.NOT_DEPLOYED for s in dry.steps)
    assert [s.target_version for s in dry.steps] == ["1.0.0", "1.0.0", "1.0.0"]


async def test_a_dry_run_compares_with_what_each_component_was_provisioned_with() -> None:
    """UNCHANGED: deployed, same version, same content. A new version, other content or a
    CORRUPT component: UPDATE."""
    before = unit(
        UNIT,
        [component("a"), component("b", depends_on=["a"]), component("c"), component("d")],
    )
    harness = Harness()
    harness.reads.documents["op-1"] = before
    harness.submissions.release(
        UNIT,
        *(
            deployed(cid, version="1.0.0", last_provisioned_operation_id="op-1")
            for cid in (UNIT, "a", "b", "c")
        ),
        deployed("d", version="1.0.0", status=ComponentStatus.CORRUPT),
    )
    now = unit(
        UNIT,
        [
            component("a"),
            component("b", depends_on=["a"], latencyMs=5),  # other content
            component("c", version="2.0.0"),
            component("d"),
            component("e"),
        ],
    )
    dry = await harness.commands.dry_run_deploy(now, environment=None, components=None)
    changes = {step.component_id: step.change for step in dry.steps}
    assert changes == {
        UNIT: Change.UNCHANGED,
        "a": Change.UNCHANGED,
        "b": Change.UPDATE,
        "c": Change.UPDATE,
        "d": Change.UPDATE,
        "e": Change.CREATE,
    }
    by_id = {step.component_id: step for step in dry.steps}
    assert (by_id["c"].current_version, by_id["c"].target_version) == ("1.0.0", "2.0.0")
    assert by_id["d"].current_status is ComponentStatus.CORRUPT
    assert harness.submissions.submitted == []


async def test_a_dry_run_refuses_what_the_real_request_would() -> None:
    """Conflicts and subset rules are checked as for the real request."""
    harness = Harness()
    harness.submissions.release(UNIT, deployed(UNIT), active_operation_id="op-9")
    with pytest.raises(OperationActiveError):
        await harness.commands.dry_run_deploy(DOCUMENT, environment=None, components=None)
    harness.submissions.release(UNIT)
    with pytest.raises(InvalidRequestError, match="cannot be deployed on their own"):
        await harness.commands.dry_run_deploy(DOCUMENT, environment=None, components=["b"])
    denied = Harness(FakePolicies(PolicyVerdict(denials=(Problem("provisioner.p", "no"),))))
    with pytest.raises(PolicyDeniedError):
        await denied.commands.dry_run_deploy(DOCUMENT, environment=None, components=None)


async def test_an_undeploy_dry_run_plans_the_deletions_in_order() -> None:
    harness = Harness()
    harness.submissions.release(
        UNIT,
        deployed(UNIT, version="1.0.0"),
        deployed("a", version="1.0.0"),
        deployed("b", depends_on=("a",), version="1.0.0"),
    )
    dry = await harness.commands.dry_run_undeploy(
        UNIT, environment="development", remove_data=False, components=None
    )
    assert [(s.component_id, s.action, s.change, s.depends_on) for s in dry.steps] == [
        ("b", TaskAction.UNPROVISION, Change.DELETE, ()),
        ("a", TaskAction.UNPROVISION, Change.DELETE, ("b",)),
        (UNIT, TaskAction.UNPROVISION, Change.DELETE, ("a", "b")),
    ]
    assert all(step.target_version is None for step in dry.steps)
    assert harness.submissions.submitted == []
