"""The runner's validation phase, with in-memory fakes: every component of a deploy is
validated by its adapter before anything is provisioned, under the same limits; an invalid one
stops the deploy with nothing touched; verdicts are durable and not asked again on resume."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
)
from provisioner.engine.ports import AdapterEndpoint, ClaimedOperation, ComponentState
from provisioner.errors import AdapterError
from tests.support import component
from tests.unit.fakes import FakeDirectory, Script
from tests.unit.test_engine import UNIT, Harness, as_left, deploy

SYSTEM = "urn:itm:system"


class Unvalidated(FakeDirectory):
    """Like ``FakeDirectory``, with some templates registered ``validateBeforeDeploy: false``."""

    def __init__(self, skip: set[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.skip = skip

    def resolve(self, template: str, environment: str) -> AdapterEndpoint | None:
        endpoint = super().resolve(template, environment)
        if endpoint is not None and template in self.skip:
            return replace(endpoint, validate_before_deploy=False)
        return endpoint


async def test_every_component_is_validated_before_anything_is_provisioned() -> None:
    """All verdicts first (the system step's too, its template being registered), then the
    provisions; each verdict is stored on its task and is an event."""
    gate = asyncio.Event()
    harness = Harness(
        deploy(component("a"), component("b", depends_on=["a"]), template=SYSTEM),
        scripts={"b": Script(validation_gate=gate)},
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_validating("b")
    await asyncio.sleep(0.01)
    assert harness.adapters.started == []  # "b" is still being validated: nothing provisioned
    gate.set()
    assert await running is OperationStatus.SUCCEEDED
    assert sorted(harness.adapters.validated) == sorted([UNIT, "a", "b"])
    assert harness.adapters.started == [UNIT, "a", "b"]
    for task_id in (UNIT, "a", "b"):
        assert harness.task(task_id).validation == {"valid": True, "errors": []}
    validation_events = [
        event.detail
        for write in harness.store.writes
        for event in write.events
        if event.detail and "validation" in event.detail
    ]
    assert len(validation_events) == 3


async def test_validation_requests_carry_the_descriptor_alone() -> None:
    """As the Tech Adapter API says of validation: the component descriptor, without the
    enriched descriptor provisions carry."""
    harness = Harness(deploy(component("a")))
    assert await harness.run() is OperationStatus.SUCCEEDED
    validation = harness.adapters.validation_requests["a"]
    provision = harness.adapters.requests["a"]
    assert validation.descriptor_kind == "COMPONENT_DESCRIPTOR"
    assert validation.latest_enriched_descriptor is None
    assert provision.latest_enriched_descriptor is not None
    assert validation.descriptor.text == provision.descriptor.text
    assert validation.remove_data is False


async def test_an_invalid_component_stops_the_deploy_with_nothing_touched() -> None:
    """No provision at all; the invalid task FAILED with the adapter's reasons, the others
    SKIPPED; no component is written (their status, and what their last operation was, stay);
    the operation FAILED saying why."""
    harness = Harness(
        deploy(component("a"), component("b", depends_on=["a"]), component("c")),
        scripts={"b": Script(invalid=["bucket name taken", "no owner"])},
    )
    assert await harness.run() is OperationStatus.FAILED
    assert harness.adapters.started == []
    failed = harness.task("b")
    assert failed.status is TaskStatus.FAILED
    assert failed.attempts == 0
    assert failed.validation == {"valid": False, "errors": ["bucket name taken", "no owner"]}
    assert "bucket name taken; no owner" in failed.error["message"]
    assert {harness.task(t).status for t in (UNIT, "a", "c")} == {TaskStatus.SKIPPED}
    assert harness.store.components == {}
    assert all(write.members is None for write in harness.store.writes)
    final = harness.store.writes[-1].operation
    assert final is not None
    assert final.error == "validation failed: 1 component(s) invalid: b"


async def test_an_adapter_that_cannot_answer_is_not_taken_as_valid() -> None:
    """A validate call that fails (adapter down, 500) refuses the deploy, saying why."""
    harness = Harness(
        deploy(component("a"), component("b")),
        scripts={"a": Script(validation_error=AdapterError("urn:itm answered 500"))},
    )
    assert await harness.run() is OperationStatus.FAILED
    assert harness.adapters.started == []
    assert harness.task("a").validation == {
        "valid": False,
        "errors": ["could not validate: urn:itm answered 500"],
    }


async def test_validation_holds_the_same_slots_as_provisioning() -> None:
    """The global limit and an adapter's maxConcurrency bound validation calls too."""
    gates = {f"c{i}": asyncio.Event() for i in range(6)}
    harness = Harness(
        deploy(*(component(cid, template="limited") for cid in gates)),
        scripts={cid: Script(validation_gate=gate) for cid, gate in gates.items()},
        directory=FakeDirectory(limits={"limited": 2}),
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_validating("c0")
    await asyncio.sleep(0.01)
    assert harness.adapters.in_flight == 2
    for gate in gates.values():
        gate.set()
    assert await running is OperationStatus.SUCCEEDED
    assert harness.adapters.max_by_template["limited"] == 2


async def test_only_what_asks_for_it_is_validated() -> None:
    """Not an adapter registered ``validateBeforeDeploy: false``, nor a system step without a
    template of its own (no adapter to ask)."""
    harness = Harness(
        deploy(component("a", template="quiet"), component("b")),
        directory=Unvalidated({"quiet"}),
    )
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.validated == ["b"]
    assert harness.task("a").validation is None


async def test_validation_can_be_turned_off() -> None:
    """``PROVISIONER_VALIDATE_BEFORE_DEPLOY=false``: no validate call, straight to provisioning."""
    harness = Harness(
        deploy(component("a")),
        scripts={"a": Script(invalid=["never asked"])},
        validate_before_deploy=False,
    )
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.validated == []
    assert harness.adapters.started == ["a"]


async def test_an_undeploy_is_not_validated() -> None:
    claimed = deploy(component("a"))
    claimed.header = replace(claimed.header, type=OperationType.UNDEPLOY)
    harness = Harness(_unprovisioning(claimed))
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.validated == []


def _unprovisioning(claimed: ClaimedOperation) -> ClaimedOperation:
    """``claimed`` turned into the undeploy of a deployed unit (same tasks, deployed)."""
    claimed.tasks = [replace(task, action=TaskAction.UNPROVISION) for task in claimed.tasks]
    claimed.components = {
        cid: ComponentState(
            cid,
            state.is_system,
            status=ComponentStatus.DEPLOYED,
            last_provisioned_operation_id=claimed.header.id,
        )
        for cid, state in claimed.components.items()
    }
    return claimed


async def test_resuming_asks_only_the_adapters_whose_verdict_was_not_recorded() -> None:
    """A restart mid-validation: recorded verdicts stand, the others are asked (validation
    changes nothing, so asking again is safe)."""
    claimed = as_left(
        deploy(component("a"), component("b")),
        a={"validation": {"valid": True, "errors": []}},
    )
    harness = Harness(claimed)
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.validated == ["b"]


async def test_resuming_with_an_invalid_verdict_recorded_refuses_without_asking() -> None:
    claimed = as_left(
        deploy(component("a"), component("b")),
        a={"validation": {"valid": False, "errors": ["bad"]}},
        b={"validation": {"valid": True, "errors": []}},
    )
    harness = Harness(claimed)
    assert await harness.run() is OperationStatus.FAILED
    assert harness.adapters.validated == []
    assert harness.adapters.started == []
    assert harness.task("a").status is TaskStatus.FAILED


async def test_no_validation_once_provisioning_has_begun() -> None:
    """A resumed deploy whose provisioning had started is past its validation phase, even if
    validation was turned on meanwhile."""
    claimed = as_left(
        deploy(component("a")),
        **{UNIT: {"status": TaskStatus.SUCCEEDED, "attempts": 1}},
    )
    harness = Harness(claimed, scripts={"a": Script(invalid=["too late"])})
    assert await harness.run() is OperationStatus.SUCCEEDED
    assert harness.adapters.validated == []


async def test_cancel_during_validation_provisions_nothing() -> None:
    gate = asyncio.Event()
    harness = Harness(
        deploy(component("a"), component("b")), scripts={"a": Script(validation_gate=gate)}
    )
    running = asyncio.create_task(harness.run())
    await harness.adapters.until_validating("a")
    harness.runner.cancel()
    assert await running is OperationStatus.CANCELLED
    assert harness.adapters.started == []
    assert {harness.task(t).status for t in (UNIT, "a", "b")} == {TaskStatus.CANCELLED}


@pytest.mark.parametrize(
    ("template", "system_status"),
    [(SYSTEM, TaskStatus.RUNNING), (None, TaskStatus.SUCCEEDED)],
)
async def test_a_deploy_s_members_are_recorded_with_its_first_start(
    template: str | None, system_status: TaskStatus
) -> None:
    """Membership changes in the write that starts the first task (the system step, called
    or not), never before: a deploy that starts nothing leaves the members as they were."""
    harness = Harness(deploy(component("a"), template=template))
    assert await harness.run() is OperationStatus.SUCCEEDED
    with_members = [write for write in harness.store.writes if write.members is not None]
    assert len(with_members) == 1
    assert with_members[0].members == [UNIT, "a"]
    (system,) = [t for t in with_members[0].tasks if t.component_id == UNIT]
    assert (system.status, system.attempts) == (system_status, 1)
