"""The status rules (``provisioner.domain.status``): a component after its task, a task cut
short, an operation's outcome and a release's status, each as a table."""

from __future__ import annotations

import pytest

from provisioner.domain.status import (
    ACKNOWLEDGED,
    ComponentStatus,
    Interruption,
    OperationStatus,
    OperationType,
    Publication,
    PublicationState,
    ReleaseStatus,
    TaskAction,
    TaskStatus,
    changes_release,
    component_after,
    may_override,
    operation_outcome,
    records_provisioning,
    refused_task_status,
    release_status,
    release_verdict,
    touched,
)

A = TaskAction
C = ComponentStatus
O = OperationStatus  # noqa: E741
R = ReleaseStatus
T = TaskStatus


# --- component_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "action", "outcome", "called", "after"),
    [
        # Success decides, whatever the component was.
        (C.NOT_DEPLOYED, A.PROVISION, T.SUCCEEDED, True, C.DEPLOYED),
        (C.CORRUPT, A.PROVISION, T.SUCCEEDED, True, C.DEPLOYED),
        (C.DEPLOYED, A.UNPROVISION, T.SUCCEEDED, True, C.NOT_DEPLOYED),
        (C.CORRUPT, A.UNPROVISION, T.SUCCEEDED, True, C.NOT_DEPLOYED),
        # A call that may have reached the adapter and did not succeed: nobody knows.
        (C.DEPLOYED, A.PROVISION, T.FAILED, True, C.CORRUPT),
        (C.NOT_DEPLOYED, A.PROVISION, T.CANCELLED, True, C.CORRUPT),
        (C.DEPLOYED, A.UNPROVISION, T.FAILED, True, C.CORRUPT),
        (C.DEPLOYED, A.UNPROVISION, T.CANCELLED, True, C.CORRUPT),
        # No call was sent: the component keeps what it was.
        (C.DEPLOYED, A.PROVISION, T.FAILED, False, C.DEPLOYED),
        (C.NOT_DEPLOYED, A.PROVISION, T.SKIPPED, False, C.NOT_DEPLOYED),
        (C.DEPLOYED, A.UNPROVISION, T.CANCELLED, False, C.DEPLOYED),
        (C.CORRUPT, A.PROVISION, T.SKIPPED, False, C.CORRUPT),
    ],
)
def test_component_after(
    before: ComponentStatus,
    action: TaskAction,
    outcome: TaskStatus,
    called: bool,
    after: ComponentStatus,
) -> None:
    """Success sets the component; failure after a call corrupts it; otherwise it is kept."""
    assert component_after(before, action, outcome, called=called) is after


@pytest.mark.parametrize("unfinished", [T.WAITING, T.RUNNING])
def test_component_after_needs_a_task_that_ended(unfinished: TaskStatus) -> None:
    with pytest.raises(ValueError, match="has not ended"):
        component_after(C.DEPLOYED, A.PROVISION, unfinished, called=True)


@pytest.mark.parametrize(
    ("interruption", "task"),
    [
        (Interruption.CANCEL, T.CANCELLED),
        (Interruption.TIMEOUT, T.FAILED),
        (Interruption.CRASH, T.FAILED),
    ],
)
def test_what_an_interrupted_task_becomes(interruption: Interruption, task: TaskStatus) -> None:
    """A user's cancel cancels; a timeout or an internal error fails."""
    assert interruption.task_status is task


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
    interruption = Interruption.CANCEL if cancelled else None
    assert operation_outcome(tasks, interruption=interruption) is outcome


def test_operation_outcome_reads_any_iterable_once() -> None:
    """A generator of statuses is enough."""
    statuses = (status for status in [T.SUCCEEDED, T.FAILED])

    assert operation_outcome(statuses) is O.FAILED


def test_an_operation_with_unfinished_tasks_has_no_outcome() -> None:
    with pytest.raises(ValueError, match="unfinished"):
        operation_outcome([T.SUCCEEDED, T.RUNNING])


# --- release_status ----------------------------------------------------------------------------


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
def test_release_status(
    members: list[ComponentStatus], last: OperationStatus, release: ReleaseStatus
) -> None:
    """Active -> IN_PROGRESS; FAILED or a CORRUPT member -> CORRUPT; else by deployed count."""
    assert release_status(members, last_operation=last) is release


@pytest.mark.parametrize(
    ("members", "last", "before", "release"),
    [
        # Nothing ran: the release keeps the status it had, whatever the outcome says.
        ([C.DEPLOYED, C.DEPLOYED], O.FAILED, R.DEPLOYED, R.DEPLOYED),
        ([C.DEPLOYED, C.NOT_DEPLOYED], O.FAILED, R.PARTIALLY_DEPLOYED, R.PARTIALLY_DEPLOYED),
        # A release left CORRUPT by an earlier failure stays CORRUPT, though its members are
        # all deployed (the failure, not a member, made it so).
        ([C.DEPLOYED, C.DEPLOYED], O.FAILED, R.CORRUPT, R.CORRUPT),
        ([C.DEPLOYED, C.DEPLOYED], O.CANCELLED, R.CORRUPT, R.CORRUPT),
        ([C.DEPLOYED], O.SUCCEEDED, R.NOT_DEPLOYED, R.NOT_DEPLOYED),
        # No status before (a new release): its members say, and a refusal is no failure.
        ([], O.FAILED, None, R.NOT_DEPLOYED),
        ([C.DEPLOYED, C.NOT_DEPLOYED], O.FAILED, None, R.PARTIALLY_DEPLOYED),
        ([C.CORRUPT], O.FAILED, None, R.CORRUPT),
        # "In progress" is no status to go back to.
        ([C.DEPLOYED], O.FAILED, R.IN_PROGRESS, R.DEPLOYED),
        # Still active: in progress.
        ([C.DEPLOYED], O.RUNNING, R.DEPLOYED, R.IN_PROGRESS),
    ],
)
def test_an_operation_that_touched_nothing_leaves_the_release_as_it_was(
    members: list[ComponentStatus],
    last: OperationStatus,
    before: ReleaseStatus | None,
    release: ReleaseStatus,
) -> None:
    """Not touched -> the status before the operation (or its members' without one)."""
    assert release_status(members, last_operation=last, touched=False, before=before) is release


@pytest.mark.parametrize("before", [None, R.DEPLOYED, R.NOT_DEPLOYED])
def test_an_operation_that_touched_something_is_judged_on_its_outcome(
    before: ReleaseStatus | None,
) -> None:
    """Touched -> the usual rule: a failed operation corrupts, whatever the status before."""
    members = [C.DEPLOYED, C.DEPLOYED]
    assert release_status(members, last_operation=O.FAILED, before=before) is R.CORRUPT
    assert release_status(members, last_operation=O.SUCCEEDED, before=before) is R.DEPLOYED


@pytest.mark.parametrize(
    ("attempts", "changed"),
    [([], False), ([0, 0, 0], False), ([0, 1, 0], True), ([2], True)],
)
def test_an_operation_touched_something_when_any_task_started(
    attempts: list[int], changed: bool
) -> None:
    """Attempts count a task's starts: none at all means nothing was sent or recorded."""
    assert touched(attempts) is changed


@pytest.mark.parametrize(("valid", "status"), [(False, T.FAILED), (True, T.SKIPPED)])
def test_what_a_task_of_a_refused_deploy_becomes(valid: bool, status: TaskStatus) -> None:
    """An invalid component's task fails; a valid one's is skipped with the rest."""
    assert refused_task_status(valid=valid) is status


def test_release_status_reads_any_iterable() -> None:
    """A generator of member statuses gives the same answer as a list."""
    members = (status for status in [C.DEPLOYED, C.NOT_DEPLOYED])

    assert release_status(members, last_operation=O.SUCCEEDED) is R.PARTIALLY_DEPLOYED


# --- release_verdict: the Market Planes' part ---------------------------------------------------

P = PublicationState
DELIVERING = Publication(P.DELIVERING, "publishing DEPLOYED to 'catalog'")
OVERDUE = Publication(P.OVERDUE, "'catalog' has not acknowledged DEPLOYED")


@pytest.mark.parametrize(
    ("members", "last", "publication", "status", "reason"),
    [
        # Every member deployed: DEPLOYED only once every Market Plane acknowledged.
        ([C.DEPLOYED, C.DEPLOYED], O.SUCCEEDED, ACKNOWLEDGED, R.DEPLOYED, None),
        ([C.DEPLOYED, C.DEPLOYED], O.SUCCEEDED, DELIVERING, R.IN_PROGRESS, DELIVERING.detail),
        # Past the publication timeout: CORRUPT, although every component deployed.
        ([C.DEPLOYED, C.DEPLOYED], O.SUCCEEDED, OVERDUE, R.CORRUPT, OVERDUE.detail),
        # The same for what an undeploy or a partial deploy leaves.
        ([C.NOT_DEPLOYED], O.SUCCEEDED, DELIVERING, R.IN_PROGRESS, DELIVERING.detail),
        ([C.NOT_DEPLOYED], O.SUCCEEDED, OVERDUE, R.CORRUPT, OVERDUE.detail),
        ([C.DEPLOYED, C.NOT_DEPLOYED], O.SUCCEEDED, ACKNOWLEDGED, R.PARTIALLY_DEPLOYED, None),
        # An operation running, or failed, or a CORRUPT member decide first, and say no more.
        ([C.DEPLOYED], O.RUNNING, OVERDUE, R.IN_PROGRESS, None),
        ([C.DEPLOYED], O.FAILED, DELIVERING, R.CORRUPT, None),
        ([C.DEPLOYED, C.CORRUPT], O.SUCCEEDED, OVERDUE, R.CORRUPT, None),
        # A cancelled operation leaves the members and the publications to decide.
        ([C.DEPLOYED], O.CANCELLED, DELIVERING, R.IN_PROGRESS, DELIVERING.detail),
    ],
)
def test_release_verdict_with_publications(
    members: list[ComponentStatus],
    last: OperationStatus,
    publication: Publication,
    status: ReleaseStatus,
    reason: str | None,
) -> None:
    """DEPLOYED requires the events acknowledged; IN_PROGRESS while they are delivered;
    CORRUPT past the publication timeout, with the reason; a later acknowledgement (the
    publication ACKNOWLEDGED again) gives back what the members say."""
    verdict = release_verdict(members, last_operation=last, publication=publication)
    assert (verdict.status, verdict.reason) == (status, reason)
    assert release_status(members, last_operation=last, publication=publication) is status


def test_release_verdict_without_publications_is_the_old_rule() -> None:
    """No Market Plane (or all acknowledged): the status the members give, with no reason."""
    assert release_verdict([C.DEPLOYED], last_operation=O.SUCCEEDED) == release_verdict(
        [C.DEPLOYED], last_operation=O.SUCCEEDED, publication=ACKNOWLEDGED
    )
    assert release_verdict([C.DEPLOYED], last_operation=O.SUCCEEDED).reason is None


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


# --- ACL updates and overrides ---------------------------------------------------------------


@pytest.mark.parametrize("outcome", [T.SUCCEEDED, T.FAILED, T.CANCELLED, T.SKIPPED])
@pytest.mark.parametrize("called", [True, False])
def test_an_acl_update_never_changes_its_component_s_status(outcome: T, called: bool) -> None:
    """A failed ACL update, even one whose call was sent, leaves its component DEPLOYED: it
    changes who may read the component, not whether it is deployed."""
    assert component_after(C.DEPLOYED, A.UPDATE_ACL, outcome, called=called) is C.DEPLOYED


def test_a_failed_provision_still_corrupts_where_an_acl_update_does_not() -> None:
    assert component_after(C.DEPLOYED, A.PROVISION, T.FAILED, called=True) is C.CORRUPT
    assert component_after(C.DEPLOYED, A.UPDATE_ACL, T.FAILED, called=True) is C.DEPLOYED


def test_only_provisioning_tasks_are_a_component_s_latest_provisioning() -> None:
    assert records_provisioning(A.PROVISION)
    assert records_provisioning(A.UNPROVISION)
    assert not records_provisioning(A.UPDATE_ACL)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (C.CORRUPT, C.DEPLOYED, True),
        (C.CORRUPT, C.NOT_DEPLOYED, True),
        (C.CORRUPT, C.CORRUPT, False),
        (C.CORRUPT, C.IN_PROGRESS, False),
        (C.DEPLOYED, C.NOT_DEPLOYED, False),
        (C.NOT_DEPLOYED, C.DEPLOYED, False),
        (C.IN_PROGRESS, C.DEPLOYED, False),
    ],
)
def test_only_a_corrupt_component_may_be_marked_deployed_or_not_by_hand(
    current: C, target: C, allowed: bool
) -> None:
    assert may_override(current, target) is allowed


@pytest.mark.parametrize(
    ("operation", "attempts", "changed"),
    [
        (OperationType.DEPLOY, [1, 0], True),
        (OperationType.DEPLOY, [0, 0], False),
        (OperationType.UNDEPLOY, [2], True),
        (OperationType.UPDATE_ACL, [1], False),  # a grant, however it ended, deploys nothing
        (OperationType.OVERRIDE, [], True),  # no task, yet a component changed
    ],
)
def test_which_operations_change_what_is_deployed(
    operation: OperationType, attempts: list[int], changed: bool
) -> None:
    assert changes_release(operation, attempts) is changed


def test_a_failed_acl_update_leaves_a_deployed_release_deployed() -> None:
    """The release after a failed ACL update is what it was (it changed nothing deployed),
    where a failed deploy that touched something makes it CORRUPT."""
    members = [C.DEPLOYED, C.DEPLOYED]
    after_acl = release_status(
        members,
        last_operation=O.FAILED,
        touched=changes_release(OperationType.UPDATE_ACL, [1]),
        before=R.DEPLOYED,
    )
    assert after_acl is R.DEPLOYED
    after_deploy = release_status(
        members,
        last_operation=O.FAILED,
        touched=changes_release(OperationType.DEPLOY, [1]),
        before=R.DEPLOYED,
    )
    assert after_deploy is R.CORRUPT


def test_an_override_makes_the_release_follow_its_components() -> None:
    """Once the one CORRUPT component is marked DEPLOYED, a release whose other members are
    deployed is DEPLOYED; marked NOT_DEPLOYED, it is PARTIALLY_DEPLOYED."""
    touched_ = changes_release(OperationType.OVERRIDE, [])
    assert (
        release_status(
            [C.DEPLOYED, C.DEPLOYED], last_operation=O.SUCCEEDED, touched=touched_, before=R.CORRUPT
        )
        is R.DEPLOYED
    )
    assert (
        release_status(
            [C.DEPLOYED, C.NOT_DEPLOYED],
            last_operation=O.SUCCEEDED,
            touched=touched_,
            before=R.CORRUPT,
        )
        is R.PARTIALLY_DEPLOYED
    )
