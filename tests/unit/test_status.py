"""How an operation's outcome and a release's status are derived (``provisioner.domain.status``)."""

from __future__ import annotations

import pytest

from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    ReleaseStatus,
    TaskStatus,
    derive_release_status,
    operation_outcome,
)

C = ComponentStatus
O = OperationStatus  # noqa: E741
R = ReleaseStatus
T = TaskStatus


# --- operation_outcome -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "cancelled", "outcome"),
    [
        ([T.SUCCEEDED, T.SUCCEEDED], False, O.SUCCEEDED),
        ([], False, O.SUCCEEDED),
        ([T.SUCCEEDED, T.FAILED], False, O.FAILED),
        ([T.FAILED, T.SKIPPED], False, O.FAILED),
        ([T.SUCCEEDED, T.SKIPPED], False, O.FAILED),
        ([T.SUCCEEDED, T.CANCELLED], False, O.FAILED),
        ([T.SUCCEEDED, T.CANCELLED], True, O.CANCELLED),
        ([T.FAILED, T.CANCELLED], True, O.CANCELLED),
        # A cancel that cancelled nothing (it came as the last task ended) changes nothing.
        ([T.SUCCEEDED, T.SUCCEEDED], True, O.SUCCEEDED),
        ([T.FAILED], True, O.FAILED),
        ([], True, O.SUCCEEDED),
    ],
)
def test_operation_outcome(
    tasks: list[TaskStatus], cancelled: bool, outcome: OperationStatus
) -> None:
    """Cancelled wins; else all-SUCCEEDED (or no task) is SUCCEEDED and anything else FAILED."""
    assert operation_outcome(tasks, cancelled=cancelled) is outcome


def test_operation_outcome_reads_any_iterable_once() -> None:
    """A generator of statuses is enough."""
    statuses = (status for status in [T.SUCCEEDED, T.FAILED])

    assert operation_outcome(statuses, cancelled=False) is O.FAILED


# --- derive_release_status ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "last", "release"),
    [
        # An active operation: in progress whatever the members say.
        ([C.DEPLOYED], O.PENDING, R.IN_PROGRESS),
        ([C.CORRUPT], O.RUNNING, R.IN_PROGRESS),
        ([], O.RUNNING, R.IN_PROGRESS),
        # A failed operation, or any corrupt member: corrupt.
        ([C.DEPLOYED, C.DEPLOYED], O.FAILED, R.CORRUPT),
        ([C.NOT_DEPLOYED], O.FAILED, R.CORRUPT),
        ([C.DEPLOYED, C.CORRUPT], O.SUCCEEDED, R.CORRUPT),
        ([C.NOT_DEPLOYED, C.CORRUPT], O.CANCELLED, R.CORRUPT),
        # Otherwise, by how many members are deployed.
        ([C.DEPLOYED, C.DEPLOYED], O.SUCCEEDED, R.DEPLOYED),
        ([C.DEPLOYED], O.CANCELLED, R.DEPLOYED),
        ([C.NOT_DEPLOYED, C.NOT_DEPLOYED], O.SUCCEEDED, R.NOT_DEPLOYED),
        ([], O.SUCCEEDED, R.NOT_DEPLOYED),
        ([C.DEPLOYED, C.NOT_DEPLOYED], O.SUCCEEDED, R.PARTIALLY_DEPLOYED),
        ([C.DEPLOYED, C.NOT_DEPLOYED], O.CANCELLED, R.PARTIALLY_DEPLOYED),
        ([C.DEPLOYED, C.IN_PROGRESS], O.SUCCEEDED, R.PARTIALLY_DEPLOYED),
        ([C.IN_PROGRESS], O.CANCELLED, R.NOT_DEPLOYED),
    ],
)
def test_derive_release_status(
    members: list[ComponentStatus], last: OperationStatus, release: ReleaseStatus
) -> None:
    """Active -> IN_PROGRESS; FAILED or a CORRUPT member -> CORRUPT; else by deployed count."""
    assert derive_release_status(members, last_operation=last) is release


def test_derive_release_status_reads_any_iterable() -> None:
    """A generator of member statuses gives the same answer as a list."""
    members = (status for status in [C.DEPLOYED, C.NOT_DEPLOYED])

    assert derive_release_status(members, last_operation=O.SUCCEEDED) is R.PARTIALLY_DEPLOYED


@pytest.mark.parametrize(
    ("status", "active"),
    [
        (O.PENDING, True),
        (O.RUNNING, True),
        (O.SUCCEEDED, False),
        (O.FAILED, False),
        (O.CANCELLED, False),
    ],
)
def test_operation_status_is_active(status: OperationStatus, active: bool) -> None:
    """Only PENDING and RUNNING operations are active."""
    assert status.is_active is active


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (T.WAITING, False),
        (T.RUNNING, False),
        (T.SUCCEEDED, True),
        (T.FAILED, True),
        (T.SKIPPED, True),
        (T.CANCELLED, True),
    ],
)
def test_task_status_is_terminal(status: TaskStatus, terminal: bool) -> None:
    """WAITING and RUNNING are the only tasks still to finish."""
    assert status.is_terminal is terminal
