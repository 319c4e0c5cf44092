"""Statuses of operations, tasks, components and releases, and the rules that move them.

Every rule is a pure function here, so that the engine (as tasks run) and the store (when an
operation is cancelled before it ran, or abandoned after an internal error) decide alike:

- ``component_after``: a component's status once its task ended (an ACL update never
  changes it);
- ``records_provisioning``: whether a task's end is its component's latest provisioning;
- ``may_override``: which component an operator may mark by hand (``OVERRIDE``);
- ``Interruption.task_status``: what a task cut short by a cancel, a timeout or a crash becomes;
- ``operation_outcome``: an operation's status once all its tasks are final;
- ``release_verdict`` (and ``release_status``, its status alone): a release's status once its
  last operation ended, with what the Market Planes acknowledged of its publications.
- ``touched``: whether an operation changed anything at all, and ``changes_release``:
  whether it changed what is deployed (an ACL update does not; an override does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class OperationType(StrEnum):
    DEPLOY = "DEPLOY"
    UNDEPLOY = "UNDEPLOY"
    UPDATE_ACL = "UPDATE_ACL"  # grant refs access to a deployed component, through its adapter
    OVERRIDE = "OVERRIDE"  # an operator's repair: a CORRUPT component marked by hand


class OperationStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_OPERATION_STATUSES


ACTIVE_OPERATION_STATUSES = frozenset({OperationStatus.PENDING, OperationStatus.RUNNING})


class TaskAction(StrEnum):
    PROVISION = "PROVISION"
    UNPROVISION = "UNPROVISION"
    UPDATE_ACL = "UPDATE_ACL"


class TaskStatus(StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in UNFINISHED_TASK_STATUSES

    @property
    def blocks_successors(self) -> bool:
        """A task that ended without succeeding: nothing downstream of it may start."""
        return self in (TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


UNFINISHED_TASK_STATUSES = frozenset({TaskStatus.WAITING, TaskStatus.RUNNING})


class ComponentStatus(StrEnum):
    NOT_DEPLOYED = "NOT_DEPLOYED"
    IN_PROGRESS = "IN_PROGRESS"
    DEPLOYED = "DEPLOYED"
    CORRUPT = "CORRUPT"


class ReleaseStatus(StrEnum):
    NOT_DEPLOYED = "NOT_DEPLOYED"
    IN_PROGRESS = "IN_PROGRESS"
    DEPLOYED = "DEPLOYED"
    PARTIALLY_DEPLOYED = "PARTIALLY_DEPLOYED"
    CORRUPT = "CORRUPT"


class Interruption(StrEnum):
    """Why work still unfinished was cut short."""

    CANCEL = "cancel"  # a user's request: the operation ends CANCELLED
    TIMEOUT = "timeout"  # the operation's time budget ran out: it ends FAILED
    CRASH = "crash"  # an internal error: it ends FAILED

    @property
    def task_status(self) -> TaskStatus:
        """What an unfinished task becomes."""
        return TaskStatus.CANCELLED if self is Interruption.CANCEL else TaskStatus.FAILED


def component_after(
    before: ComponentStatus, action: TaskAction, outcome: TaskStatus, *, called: bool
) -> ComponentStatus:
    """A component's status once its task ended with ``outcome``.

    ``before`` is its status before the task started. A task that succeeded leaves its component
    DEPLOYED (provision) or NOT_DEPLOYED (unprovision). One that did not succeed leaves it
    CORRUPT if its adapter call may have been sent (``called``), since the adapter may have done
    part of the work; otherwise the component keeps the status it had.

    An ACL update, whatever its outcome, leaves the component as it was (DEPLOYED): it changes
    who may read what the component provides, not whether it is there. A failed one is the
    operation's failure, with the adapter's message, and the grant can simply be asked again.
    """
    if not outcome.is_terminal:
        raise ValueError(f"a task that is {outcome} has not ended")
    if action is TaskAction.UPDATE_ACL:
        return before
    if outcome is TaskStatus.SUCCEEDED:
        if action is TaskAction.PROVISION:
            return ComponentStatus.DEPLOYED
        return ComponentStatus.NOT_DEPLOYED
    return ComponentStatus.CORRUPT if called else before


def records_provisioning(action: TaskAction) -> bool:
    """Whether the end of a task with ``action`` becomes its component's latest provisioning
    operation (its ``last_operation_*``, and the ``latestProvisioningOperation`` later requests
    tell adapters): a provision or unprovision. An ACL update is not one."""
    return action is not TaskAction.UPDATE_ACL


OVERRIDE_REASON_CHARACTERS = 1000  # the most an override's reason may say

OVERRIDE_TARGETS = frozenset({ComponentStatus.DEPLOYED, ComponentStatus.NOT_DEPLOYED})


def may_override(current: ComponentStatus, target: ComponentStatus) -> bool:
    """Whether an operator may mark a component ``target`` by hand (an ``OVERRIDE``, after
    fixing its platform): only a CORRUPT one, the status nobody knows the truth of, and only
    as DEPLOYED or NOT_DEPLOYED. Any other status is what an operation left, and an operation
    (deploy, undeploy, retry) changes it."""
    return current is ComponentStatus.CORRUPT and target in OVERRIDE_TARGETS


def refused_task_status(*, valid: bool) -> TaskStatus:
    """What a task of a deploy refused by validation becomes: FAILED if its component was
    found invalid, SKIPPED otherwise. None was called, so every component keeps its status."""
    return TaskStatus.SKIPPED if valid else TaskStatus.FAILED


def operation_outcome(
    task_statuses: Iterable[TaskStatus], *, interruption: Interruption | None = None
) -> OperationStatus:
    """The final status of an operation whose tasks are all final."""
    statuses = set(task_statuses)
    if not statuses.isdisjoint(UNFINISHED_TASK_STATUSES):
        raise ValueError("an operation with unfinished tasks has no outcome yet")
    # A cancel that cancelled nothing (it came as the last task finished) changes nothing.
    if interruption is Interruption.CANCEL and TaskStatus.CANCELLED in statuses:
        return OperationStatus.CANCELLED
    if statuses <= {TaskStatus.SUCCEEDED}:
        return OperationStatus.SUCCEEDED
    return OperationStatus.FAILED


class DeliveryStatus(StrEnum):
    """One publication to one Market Plane: retried until the Market Plane acknowledges it."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    # Never delivered: its Market Plane was removed from the registry before it acknowledged.
    DROPPED = "DROPPED"


class PublicationState(StrEnum):
    """Where a release's publications stand with the configured Market Planes."""

    ACKNOWLEDGED = "ACKNOWLEDGED"  # every one acknowledged every event (or none is configured)
    DELIVERING = "DELIVERING"  # an event is not acknowledged yet, within the publication timeout
    OVERDUE = "OVERDUE"  # an event is still not acknowledged past the publication timeout


@dataclass(frozen=True, slots=True)
class Publication:
    """A release's publications as its status rule sees them; ``detail`` says, unless
    ACKNOWLEDGED, which event waits for which Market Plane (and its last error)."""

    state: PublicationState = PublicationState.ACKNOWLEDGED
    detail: str | None = None


ACKNOWLEDGED = Publication()


@dataclass(frozen=True, slots=True)
class ReleaseVerdict:
    """A release's status and, when the status alone does not say why, the reason."""

    status: ReleaseStatus
    reason: str | None = None


def touched(attempts: Iterable[int]) -> bool:
    """Whether an operation whose tasks made these ``attempts`` changed anything.

    A task's attempts count its starts: a provision or unprovision call that may have been
    sent, or the system step recording the unit. An operation none of whose tasks ever started
    (refused by validation, cancelled before anything ran) touched nothing.
    """
    return any(count > 0 for count in attempts)


def changes_release(operation: OperationType, attempts: Iterable[int]) -> bool:
    """Whether an operation of type ``operation`` whose tasks made these ``attempts`` changed
    what is deployed, and so whether its end derives the release's status anew.

    A deploy or undeploy did if it ``touched`` anything. An ACL update never does: its release
    stays as it was, whatever the outcome (a failed grant corrupts nothing). An override always
    does: it changed a component's status by hand, with no task.
    """
    if operation is OperationType.UPDATE_ACL:
        return False
    if operation is OperationType.OVERRIDE:
        return True
    return touched(attempts)


def release_verdict(
    member_statuses: Iterable[ComponentStatus],
    *,
    last_operation: OperationStatus,
    publication: Publication = ACKNOWLEDGED,
    touched: bool = True,
    before: ReleaseStatus | None = None,
) -> ReleaseVerdict:
    """The status of a release once its last operation has ended, and why.

    ``member_statuses`` covers the system step and every component of the release (those of
    the last deployed descriptor and any still deployed from earlier ones). A failed last
    operation, or any component left CORRUPT, makes the release CORRUPT. Otherwise the release
    is what its members are only once every configured Market Plane acknowledged its events:
    while they are being delivered it is IN_PROGRESS, and past the publication timeout CORRUPT
    (as in Witboost, "even if all its components have been successfully deployed"), until a
    later delivery succeeds.

    An operation that ``touched`` nothing leaves the release as it was: ``before``, its status
    when the operation was submitted (unless its publications moved since). Without one (the
    release did not exist yet), its members say what it is, whatever the operation's outcome: a
    refused deploy corrupts nothing.
    """
    if last_operation.is_active:
        return ReleaseVerdict(ReleaseStatus.IN_PROGRESS)
    if not touched:
        settled = before is not None and before is not ReleaseStatus.IN_PROGRESS
        if settled and publication.state is PublicationState.ACKNOWLEDGED:
            assert before is not None
            return ReleaseVerdict(before)
        last_operation = OperationStatus.SUCCEEDED
    statuses = list(member_statuses)
    if last_operation is OperationStatus.FAILED or ComponentStatus.CORRUPT in statuses:
        return ReleaseVerdict(ReleaseStatus.CORRUPT)
    if publication.state is PublicationState.OVERDUE:
        return ReleaseVerdict(ReleaseStatus.CORRUPT, publication.detail)
    if publication.state is PublicationState.DELIVERING:
        return ReleaseVerdict(ReleaseStatus.IN_PROGRESS, publication.detail)
    deployed = sum(status is ComponentStatus.DEPLOYED for status in statuses)
    if deployed == 0:
        return ReleaseVerdict(ReleaseStatus.NOT_DEPLOYED)
    if deployed == len(statuses):
        return ReleaseVerdict(ReleaseStatus.DEPLOYED)
    return ReleaseVerdict(ReleaseStatus.PARTIALLY_DEPLOYED)


def release_status(
    member_statuses: Iterable[ComponentStatus],
    *,
    last_operation: OperationStatus,
    publication: Publication = ACKNOWLEDGED,
    touched: bool = True,
    before: ReleaseStatus | None = None,
) -> ReleaseStatus:
    """The status alone of ``release_verdict``."""
    return release_verdict(
        member_statuses,
        last_operation=last_operation,
        publication=publication,
        touched=touched,
        before=before,
    ).status
