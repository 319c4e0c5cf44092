"""Statuses of operations, tasks, components and releases, and how a release's is derived."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class OperationType(StrEnum):
    DEPLOY = "DEPLOY"
    UNDEPLOY = "UNDEPLOY"


class OperationStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_active(self) -> bool:
        return self in (OperationStatus.PENDING, OperationStatus.RUNNING)


ACTIVE_OPERATION_STATUSES = (OperationStatus.PENDING, OperationStatus.RUNNING)


class TaskAction(StrEnum):
    PROVISION = "PROVISION"
    UNPROVISION = "UNPROVISION"


class TaskStatus(StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self not in (TaskStatus.WAITING, TaskStatus.RUNNING)


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


def operation_outcome(task_statuses: Iterable[TaskStatus], *, cancelled: bool) -> OperationStatus:
    """The final status of an operation whose tasks are all terminal."""
    statuses = set(task_statuses)
    # A cancel that cancelled nothing (it came as the last task finished) changes nothing.
    if cancelled and TaskStatus.CANCELLED in statuses:
        return OperationStatus.CANCELLED
    if statuses <= {TaskStatus.SUCCEEDED}:
        return OperationStatus.SUCCEEDED
    return OperationStatus.FAILED


def derive_release_status(
    member_statuses: Iterable[ComponentStatus], *, last_operation: OperationStatus
) -> ReleaseStatus:
    """The status of a release once its last operation has ended.

    ``member_statuses`` covers the system step and every component of the release (those of
    the last deployed descriptor and any still deployed from earlier ones). A failed last
    operation, or any component left CORRUPT, makes the release CORRUPT.
    """
    if last_operation.is_active:
        return ReleaseStatus.IN_PROGRESS
    statuses = list(member_statuses)
    if last_operation is OperationStatus.FAILED or ComponentStatus.CORRUPT in statuses:
        return ReleaseStatus.CORRUPT
    deployed = sum(status is ComponentStatus.DEPLOYED for status in statuses)
    if deployed == 0:
        return ReleaseStatus.NOT_DEPLOYED
    if deployed == len(statuses):
        return ReleaseStatus.DEPLOYED
    return ReleaseStatus.PARTIALLY_DEPLOYED
