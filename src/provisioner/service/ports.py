"""What the service needs from the store and the engine, declared as interfaces, so that its
use cases are tested with in-memory fakes (``tests/unit/test_service.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from provisioner.domain.status import ComponentStatus, OperationStatus, ReleaseStatus
from provisioner.engine.ports import AdapterEndpoint, AdapterErrorKind, OperationHeader
from provisioner.policies import PolicyVerdict
from provisioner.store.submissions import NewOperation, ReleaseState
from provisioner.store.views import EventView, OperationView, Page, PublicationView, ReleaseView


class SubmissionStore(Protocol):
    """Where operations are submitted (``store.submissions.Submissions``)."""

    async def release_state(self, deployment_unit_id: str, environment: str) -> ReleaseState:
        """The release now, as one consistent value."""
        ...

    async def submit(
        self, new: NewOperation, *, based_on: ReleaseState | None = None
    ) -> OperationView:
        """Store ``new`` unless an operation is active there (``OperationActiveError``) or the
        release moved on from ``based_on`` (``ReleaseChangedError``)."""
        ...

    async def override(
        self, header: OperationHeader, component_id: str, status: ComponentStatus
    ) -> None:
        """Record ``header`` (an OVERRIDE) as ended, the component marked ``status`` and the
        release's status derived again, in one transaction; ``NotFoundError``, or
        ``ConflictError`` unless the component is CORRUPT and no operation is active."""
        ...

    async def request_cancel(
        self, operation_id: str, *, now: datetime, principal: str | None = None
    ) -> OperationStatus:
        """Cancel a pending operation, or flag a running one; its status afterwards."""
        ...


class ReadStore(Protocol):
    """What is shown of operations and releases (``store.queries.Queries``)."""

    async def operation(self, operation_id: str) -> OperationView | None: ...

    async def operations(
        self,
        *,
        deployment_unit_id: str | None,
        environment: str | None,
        status: OperationStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[OperationView]: ...

    async def events(self, operation_id: str, *, after: int, limit: int) -> list[EventView]: ...

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView | None: ...

    async def releases(
        self,
        *,
        environment: str | None,
        status: ReleaseStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[ReleaseView]: ...

    async def document(self, operation_id: str) -> Mapping[str, Any] | None:
        """The unit descriptor an operation deployed."""
        ...

    async def publications(
        self, deployment_unit_id: str, environment: str, *, limit: int, cursor: str | None
    ) -> Page[PublicationView]:
        """A release's Market Plane events with their deliveries, newest first."""
        ...


class WorkerHandle(Protocol):
    """This replica's engine (``engine.worker.Worker``)."""

    def wake(self) -> None:
        """Work was submitted: look for it now."""
        ...

    def cancel(self, operation_id: str) -> bool:
        """Cut the operation if this replica runs it."""
        ...


class PolicyCheck(Protocol):
    """The service's policies (``policies.PolicyEngine``)."""

    async def evaluate(self, input_json: str) -> PolicyVerdict:
        """The policies' verdict on a request, given their input as JSON text."""
        ...


# --- Observation and event streams -----------------------------------------------------------


class ServiceObserver(Protocol):
    """What the use cases report (the service's metrics implement it; cheap, never raises)."""

    def operation_submitted(self, header: OperationHeader) -> None: ...

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        """An operation ended without running (a pending one was cancelled)."""
        ...

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        """A call passed through to an adapter failed its time limit."""
        ...

    def policy_denied(self, policy: str) -> None:
        """A policy (its Rego package) denied a request, which was refused."""
        ...


class QuietServiceObserver:
    """A ``ServiceObserver`` that notes nothing."""

    def operation_submitted(self, header: OperationHeader) -> None:
        return None

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        return None

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        return None

    def policy_denied(self, policy: str) -> None:
        return None


class EventLog(Protocol):
    """An operation's audit trail, as streams read it (``store.queries.Queries``)."""

    async def status_and_events(
        self, operation_id: str, *, after: int, limit: int
    ) -> tuple[OperationStatus | None, list[EventView]]:
        """The status (None: no such operation), then the events after ``after``."""
        ...


class Subscription(Protocol):
    """A reader's wake-up for one operation's events (``store.notifications.Wakeup``)."""

    async def wait(self) -> None:
        """Until events may have been added, or it is time to look anyway."""
        ...

    def close(self) -> None: ...


class EventWakeups(Protocol):
    """Wakes the readers of an operation's events (``store.notifications.EventWakeups``)."""

    def subscribe(self, operation_id: str) -> Subscription: ...
