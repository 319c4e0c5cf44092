"""The service's commands over in-memory fakes of its ports: what is planned against which
release, when a request is refused, planning again when the release moved on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
)
from provisioner.engine.ports import ComponentState, TaskState
from provisioner.errors import (
    ConflictError,
    InvalidDescriptorError,
    InvalidRequestError,
    NotFoundError,
    OperationActiveError,
    ReleaseChangedError,
)
from provisioner.service.commands import PLANNING_ATTEMPTS, Commands
from provisioner.service.reads import Reads
from provisioner.store.views import OperationView
from tests.support import component, unit
from tests.unit.fakes import T0, FakeDirectory, FakeReads, FakeSubmissions, FakeWorker

UNIT = "urn:dmb:dp:test:service:0"


class Harness:
    def __init__(self, *, missing: set[str] | None = None) -> None:
        self.submissions = FakeSubmissions()
        self.reads = FakeReads()
        self.worker = FakeWorker()
        self.commands = Commands(
            directory=FakeDirectory(missing=missing),
            submissions=self.submissions,
            reads=Reads(self.reads),
            worker=self.worker,
            clock=lambda: T0,
        )

    def steps(self) -> dict[str, set[str]]:
        """The last submitted plan, in order: each step's component and what it waits for."""
        plan = self.submissions.submitted[-1].plan
        return {step.component_id: set(step.depends_on) for step in plan.steps}


def deployed(
    component_id: str, *, depends_on: tuple[str, ...] = (), **fields: Any
) -> ComponentState:
    return ComponentState(
        component_id,
        component_id == UNIT,
        status=fields.pop("status", ComponentStatus.DEPLOYED),
        infrastructure_template_id="t",
        depends_on=depends_on,
        **fields,
    )


DOCUMENT = unit(UNIT, [component("a"), component("b", depends_on=["a"]), component("c")])


async def test_a_full_deploy_is_planned_without_reading_the_release() -> None:
    """What is deployed does not change a full deploy's plan: no read, one submit, a wake."""
    harness = Harness()
    view = await harness.commands.deploy(DOCUMENT, environment=None, components=None)
    assert harness.submissions.reads == 0
    assert harness.worker.wakes == 1
    assert view.status is OperationStatus.PENDING
    assert [task.status for task in view.tasks] == [TaskStatus.WAITING] * 4
    assert harness.steps() == {UNIT: set(), "a": {UNIT}, "b": {"a"}, "c": {UNIT}}
    new = harness.submissions.submitted[-1]
    assert [row.component_id for row in new.components] == [UNIT, "a", "b", "c"]
    assert new.header.environment == "development"


async def test_a_subset_deploy_may_rely_on_what_is_deployed() -> None:
    """b alone: allowed when a is DEPLOYED in the release, refused when it is not."""
    harness = Harness()
    harness.submissions.release(UNIT, deployed("a"))
    await harness.commands.deploy(DOCUMENT, environment=None, components=["b"])
    assert harness.steps() == {UNIT: set(), "b": {UNIT}}

    harness.submissions.release(UNIT, deployed("a", status=ComponentStatus.CORRUPT))
    with pytest.raises(InvalidRequestError, match="cannot be deployed on their own"):
        await harness.commands.deploy(DOCUMENT, environment=None, components=["b"])


async def test_a_request_is_planned_again_when_the_release_moved_on() -> None:
    """Another request won the race between read and write: plan again, a bounded number of
    times, then give up with 409."""
    harness = Harness()
    harness.submissions.release(UNIT, deployed("a"))
    harness.submissions.changes = PLANNING_ATTEMPTS - 1
    await harness.commands.deploy(DOCUMENT, environment=None, components=["b"])
    assert harness.submissions.reads == PLANNING_ATTEMPTS
    assert len(harness.submissions.submitted) == 1

    harness.submissions.changes = PLANNING_ATTEMPTS
    with pytest.raises(ReleaseChangedError):
        await harness.commands.deploy(DOCUMENT, environment=None, components=["b"])
    assert harness.worker.wakes == 1


async def test_an_active_operation_refuses_a_request_before_it_is_planned() -> None:
    harness = Harness()
    harness.submissions.release(UNIT, deployed("a"), active_operation_id="op-9")
    with pytest.raises(OperationActiveError) as refused:
        await harness.commands.undeploy(
            UNIT, environment="development", remove_data=False, components=None
        )
    assert refused.value.operation_id == "op-9"
    assert harness.submissions.submitted == []


async def test_a_descriptor_is_checked_in_full_before_anything_is_submitted() -> None:
    """Every problem at once: a missing version and an adapter that is not registered."""
    harness = Harness(missing={"gone"})
    document = unit(UNIT, [component("a", template="gone", version=None)], environment="qa")
    del document["version"]
    with pytest.raises(InvalidDescriptorError) as refused:
        await harness.commands.deploy(document, environment="development", components=None)
    paths = [problem.path for problem in refused.value.problems]
    assert paths == ["descriptor.version", "descriptor.components[0].infrastructureTemplateId"]
    assert harness.submissions.submitted == []


async def test_undeploy_runs_dependents_first_and_the_system_last() -> None:
    harness = Harness()
    harness.submissions.release(
        UNIT, deployed(UNIT), deployed("a"), deployed("b", depends_on=("a",)), version="2.0.0"
    )
    view = await harness.commands.undeploy(
        UNIT, environment="development", remove_data=True, components=None
    )
    assert harness.steps() == {"b": set(), "a": {"b"}, UNIT: {"a", "b"}}
    assert list(harness.steps()) == ["b", "a", UNIT]
    assert view.type is OperationType.UNDEPLOY
    assert view.remove_data
    assert view.version == "2.0.0"
    assert {task.action for task in view.tasks} == {TaskAction.UNPROVISION}


async def test_undeploy_keeps_the_system_while_components_stay_deployed() -> None:
    harness = Harness()
    harness.submissions.release(UNIT, deployed(UNIT), deployed("a"), deployed("c"))
    await harness.commands.undeploy(
        UNIT, environment="development", remove_data=False, components=["c"]
    )
    assert harness.steps() == {"c": set()}


async def test_undeploy_of_nothing_deployed_is_not_found() -> None:
    harness = Harness()
    harness.submissions.release(UNIT, deployed("a", status=ComponentStatus.NOT_DEPLOYED))
    with pytest.raises(NotFoundError, match="nothing of"):
        await harness.commands.undeploy(
            UNIT, environment="development", remove_data=False, components=None
        )


async def test_undeploy_needs_an_adapter_for_every_step() -> None:
    harness = Harness(missing={"t"})
    harness.submissions.release(UNIT, deployed("a"))
    with pytest.raises(InvalidRequestError, match="no Tech Adapter to undeploy"):
        await harness.commands.undeploy(
            UNIT, environment="development", remove_data=False, components=None
        )


def failed_deploy(operation_id: str = "01a") -> OperationView:
    def task(component_id: str, status: TaskStatus, *deps: str) -> TaskState:
        return TaskState(component_id, TaskAction.PROVISION, deps, "t", component_id == UNIT)

    return OperationView(
        id=operation_id,
        type=OperationType.DEPLOY,
        deployment_unit_id=UNIT,
        environment="development",
        version="1.0.0",
        remove_data=False,
        created_at=T0,
        status=OperationStatus.FAILED,
        tasks=(
            replace(task(UNIT, TaskStatus.SUCCEEDED), status=TaskStatus.SUCCEEDED),
            replace(task("a", TaskStatus.SUCCEEDED, UNIT), status=TaskStatus.SUCCEEDED),
            replace(task("b", TaskStatus.FAILED, "a"), status=TaskStatus.FAILED),
            replace(task("c", TaskStatus.SKIPPED, "b"), status=TaskStatus.SKIPPED),
        ),
    )


async def test_a_retry_runs_only_what_did_not_succeed() -> None:
    harness = Harness()
    harness.reads.views["01a"] = failed_deploy()
    harness.reads.documents["01a"] = DOCUMENT
    harness.submissions.release(UNIT, last_started_operation_id="01a")
    view = await harness.commands.retry("01a")
    assert harness.steps() == {"b": set(), "c": {"b"}}
    assert view.retry_of == "01a"
    assert view.requested_components == ("b", "c")
    assert harness.submissions.submitted[-1].descriptor_json is not None


async def test_a_retry_is_refused_once_another_operation_has_run() -> None:
    harness = Harness()
    harness.reads.views["01a"] = failed_deploy()
    harness.submissions.release(UNIT, last_started_operation_id="01b")
    with pytest.raises(InvalidRequestError, match="cannot retry"):
        await harness.commands.retry("01a")


@pytest.mark.parametrize(
    ("status", "message"),
    [(OperationStatus.RUNNING, "still RUNNING"), (OperationStatus.SUCCEEDED, "every task")],
)
async def test_a_retry_needs_an_ended_operation_with_something_left(
    status: OperationStatus, message: str
) -> None:
    harness = Harness()
    view = failed_deploy()
    if status is OperationStatus.SUCCEEDED:
        view = replace(
            view, tasks=tuple(replace(t, status=TaskStatus.SUCCEEDED) for t in view.tasks)
        )
    harness.reads.views["01a"] = replace(view, status=status)
    with pytest.raises(ConflictError, match=message):
        await harness.commands.retry("01a")


@pytest.mark.parametrize(
    ("after", "cut"), [(OperationStatus.RUNNING, ["01a"]), (OperationStatus.CANCELLED, [])]
)
async def test_a_cancel_reaches_the_local_worker_only_for_a_running_operation(
    after: OperationStatus, cut: list[str]
) -> None:
    harness = Harness()
    harness.reads.views["01a"] = failed_deploy()
    harness.submissions.cancels["01a"] = after
    await harness.commands.cancel("01a")
    assert harness.worker.cancelled == cut
