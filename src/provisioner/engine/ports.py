"""What the engine needs from the outside world, declared as interfaces and value objects.

``adapters`` implements ``TechAdapterPort``, ``AdapterDirectory`` and ``MarketplacePort``;
``store`` implements ``OperationStore``, ``PublicationStore`` and ``ReplicaRegistry``. Tests use
in-memory fakes of the same interfaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from provisioner.domain.plan import STEP_FIELDS, Step
from provisioner.domain.publication import PublicationFacts
from provisioner.domain.rendering import WireText
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    TaskAction,
    TaskStatus,
)
from provisioner.errors import AdapterTimeoutError

JSON = dict[str, Any]


# --- Tech Adapters -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdapterEndpoint:
    """Where and how to reach the Tech Adapter of one ``infrastructureTemplateId``."""

    infrastructure_template_id: str
    url: str
    timeout_seconds: float
    max_concurrency: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    async_validation: bool = False
    # Validate each component with this adapter before any deploy provisions (the registry's
    # validateBeforeDeploy; PROVISIONER_VALIDATE_BEFORE_DEPLOY turns it off for all).
    validate_before_deploy: bool = True

    @property
    def key(self) -> str:
        """Identifies the adapter for per-adapter concurrency limits."""
        return f"{self.infrastructure_template_id}@{self.url}"

    @asynccontextmanager
    async def time_limit(self, *, awaiting: str = "finish") -> AsyncIterator[None]:
        """Bound what runs inside by ``timeout_seconds``: past it, ``AdapterTimeoutError``
        ("did not ``awaiting`` within ...")."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                yield
        except TimeoutError:
            raise AdapterTimeoutError(
                self.infrastructure_template_id, self.timeout_seconds, awaiting=awaiting
            ) from None


class AdapterDirectory(Protocol):
    """The Tech Adapter registry, as the engine and the service see it."""

    def resolve(self, infrastructure_template_id: str, environment: str) -> AdapterEndpoint | None:
        """The adapter for this template in this environment, or None if none is registered."""
        ...


DescriptorKind = Literal["DATAPRODUCT_DESCRIPTOR", "COMPONENT_DESCRIPTOR"]


@dataclass(frozen=True, slots=True)
class AdapterRequest:
    """One provision or unprovision call, in the terms of the Tech Adapter API."""

    action: TaskAction
    descriptor_kind: DescriptorKind
    descriptor: WireText
    latest_enriched_descriptor: WireText | None
    remove_data: bool


@dataclass(frozen=True, slots=True)
class ProvisioningResult:
    """The final answer of a Tech Adapter: COMPLETED (``succeeded``) or FAILED."""

    succeeded: bool
    public_info: JSON | None = None
    private_info: JSON | None = None
    logs: list[JSON] = field(default_factory=list)
    error: JSON | None = None


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    """A Tech Adapter's verdict on a component (or the unit): valid, or the reasons not."""

    valid: bool
    errors: list[str]

    def as_json(self) -> JSON:
        return {"valid": self.valid, "errors": list(self.errors)}


@dataclass(frozen=True, slots=True)
class Accepted:
    """The adapter took the request asynchronously; poll with ``token``."""

    token: str


class TechAdapterPort(Protocol):
    """Calls to Tech Adapters; failures raise ``AdapterError`` with a readable ``detail``."""

    async def start(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ProvisioningResult | Accepted:
        """Send the provision or unprovision request."""
        ...

    async def wait(self, endpoint: AdapterEndpoint, token: str) -> ProvisioningResult:
        """Poll the status of ``token`` until the adapter reports COMPLETED or FAILED."""
        ...

    async def validate(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ValidationOutcome:
        """Ask the adapter whether the request's descriptor is valid (nothing is changed)."""
        ...

    async def update_acl(
        self, endpoint: AdapterEndpoint, *, refs: list[str], request: str, result: str
    ) -> ProvisioningResult:
        """Grant ``refs`` access to a deployed component: ``request`` is its
        COMPONENT_DESCRIPTOR YAML, ``result`` the JSON of its last ProvisioningStatus."""
        ...


# --- Persistence ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskState(Step):
    """A task of an operation, as the engine knows it: its plan step and its progress.

    The fields are the columns of the store's task table, by the same names: the step's are
    written once, when the operation is submitted; the others (``TASK_PROGRESS``) with every
    change. The runner replaces the value as the task moves on, so a write holds the state as
    it was when the write was made.
    """

    status: TaskStatus = TaskStatus.WAITING
    attempts: int = 0
    token: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    public_info: JSON | None = None
    private_info: JSON | None = None
    logs: list[JSON] | None = None
    error: JSON | None = None
    # A deploy's validation of the component by its adapter, before anything is provisioned:
    # ``{"valid": bool, "errors": [...]}``; None until validated (or when not validated).
    validation: JSON | None = None


TASK_PROGRESS = tuple(name for name in TaskState.__dataclass_fields__ if name not in STEP_FIELDS)


@dataclass(frozen=True, slots=True)
class ComponentState:
    """What provisioner knows of one component (or the system) in one environment.

    Its fields are the columns of the store's component table, by the same names; all but the
    first two (``COMPONENT_PROGRESS``) change as operations run.
    """

    component_id: str
    is_system: bool
    status: ComponentStatus = ComponentStatus.NOT_DEPLOYED
    version: str | None = None
    infrastructure_template_id: str | None = None
    depends_on: tuple[str, ...] = ()
    last_sent_operation_id: str | None = None
    last_provisioned_operation_id: str | None = None
    public_info: JSON | None = None
    private_info: JSON | None = None
    logs: list[JSON] | None = None
    refs: tuple[str, ...] | None = None  # granted by its last successful ACL update
    last_operation_id: str | None = None
    last_operation_type: OperationType | None = None
    last_task_status: TaskStatus | None = None
    last_finished_at: datetime | None = None


COMPONENT_PROGRESS = tuple(
    name
    for name in ComponentState.__dataclass_fields__
    if name not in ("component_id", "is_system")
)


def descriptor_source(header: OperationHeader, component: ComponentState | None) -> str | None:
    """The operation whose descriptor a task of ``header`` sends for ``component``.

    A deploy sends its own. An unprovision sends the descriptor the component was last
    provisioned with (or, if that never succeeded, the one it was last sent).
    """
    if header.type is OperationType.DEPLOY:
        return header.id
    if component is None:
        return None
    return component.last_provisioned_operation_id or component.last_sent_operation_id


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of ownership: every write of an operation's state is conditional on it."""

    operation_id: str
    token: int


@dataclass(frozen=True, slots=True)
class OperationHeader:
    """The immutable facts of an operation."""

    id: str
    type: OperationType
    deployment_unit_id: str
    environment: str
    version: str | None
    remove_data: bool
    created_at: datetime
    # Who asked for it (an API token's name or a JWT's subject); its events are recorded as
    # done on their behalf.
    requested_by: str | None = None
    # The request that submitted it (``X-Request-Id``) and its W3C trace id: the adapter calls
    # made for it in the background carry them, so that adapters' logs join the request's.
    request_id: str | None = None
    trace_id: str | None = None
    # UPDATE_ACL: the users and groups to grant access to its component.
    refs: tuple[str, ...] | None = None
    # OVERRIDE: why the operator marked the component by hand.
    reason: str | None = None


@dataclass(slots=True)
class ClaimedOperation:
    """Everything a replica needs to run (or resume) an operation it has just claimed.

    ``documents`` maps an operation id to the unit descriptor it deployed: the one of this
    operation (deploy), those that last provisioned each component (undeploy), and the one of
    the release's last deploy (for ``latestEnrichedDescriptor``).
    """

    header: OperationHeader
    fence: Fence
    status: OperationStatus
    started_at: datetime | None
    cancel_requested: bool
    tasks: list[TaskState]
    components: dict[str, ComponentState]
    documents: dict[str, Mapping[str, Any]]
    release_descriptor_operation_id: str | None
    documents_size: int = 0  # bytes of JSON text they were read from


@dataclass(frozen=True, slots=True)
class OperationWrite:
    """The end of an operation; the store derives its release's status in the same write."""

    status: OperationStatus
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One line of an operation's audit trail."""

    component_id: str | None
    old_status: str | None
    new_status: str
    at: datetime
    detail: JSON | None = None


@dataclass(slots=True)
class StateWrite:
    """State changes of one operation, applied atomically if its fence still holds."""

    fence: Fence
    header: OperationHeader
    tasks: list[TaskState] = field(default_factory=list)
    components: list[ComponentState] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    operation: OperationWrite | None = None
    # A deploy records, when it starts, which components make up the release from now on.
    members: list[str] | None = None
    # After an internal error: every task not yet final in the database ends FAILED (those
    # that may have called their adapter leave their component CORRUPT) and the operation
    # FAILED with this message. Status columns only, so it cannot fail on the data that
    # caused the error.
    abandon: str | None = None


class OperationStore(Protocol):
    """Durable state of operations, as the engine uses it."""

    async def claim(
        self,
        *,
        owner: str,
        replica_id: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        running: Sequence[str] = (),
    ) -> list[ClaimedOperation]:
        """Take up to ``limit`` operations that are pending or whose lease has lapsed.

        ``running`` are the operations the caller is running itself: never taken again, even
        if their lease lapsed while the database was out of reach.
        """
        ...

    async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
        """Apply the writes in one transaction; return the operation ids whose fence failed.

        Writes of an operation whose fence failed are dropped; the others are committed. Each
        applied write also renews its operation's lease.
        """
        ...

    async def renew_leases(
        self, fences: Sequence[Fence], *, lease_seconds: float | None, now: datetime
    ) -> tuple[set[str], set[str]]:
        """Check the fences and extend the leases (unless ``lease_seconds`` is None).

        Returns the ids whose fence failed and the ids with a cancel requested.
        """
        ...

    async def release_leases(self, fences: Sequence[Fence]) -> None:
        """Hand operations back (shutdown) so another replica can claim them at once."""
        ...


# --- Market Plane publication ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketplaceEndpoint:
    """A Market Plane that receives the release events (from the registry's ``marketplaces``)."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Signs each body (``X-Provisioner-Signature: sha256=<HMAC>``); never logged.
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One publication to one Market Plane, as a replica claims it to send it.

    Its fields are columns of the store's delivery table, by the same names; ``attempts``
    counts this attempt, and fences the outcome: only the claim that made it may record it.
    """

    publication_id: int
    marketplace: str
    deployment_unit_id: str
    environment: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What a Market Plane made of a delivery: acknowledged (2xx) or not, and why not."""

    acknowledged: bool
    status_code: int | None = None
    error: str | None = None
    # Why not, for metrics: an error answer, none in time, no connection, or an unusable one.
    failure: AdapterErrorKind | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationRecord(PublicationFacts):
    """Everything an event is built from, as fixed when it was published: for DEPLOYED the
    deployed descriptor and the members' public info then; for UNDEPLOYED the components
    undeployed; for ACL_UPDATED its ``detail`` (``componentId``, ``refs``)."""

    document: Mapping[str, Any] | None = None
    public_info: Mapping[str, JSON | None] = field(default_factory=dict)
    components: tuple[str, ...] = ()
    whole_unit: bool = False
    detail: JSON | None = None
    size: int = 0  # bytes of stored JSON text it was read from


class PublicationStore(Protocol):
    """The outbox of release events and their deliveries, as the publisher uses it."""

    async def due(
        self, *, owner: str, replica_id: str, marketplaces: Sequence[str], now: datetime
    ) -> bool:
        """Whether ``claim_deliveries`` may find something now (a read, cheaper than a claim
        when there is nothing to do, the usual case)."""
        ...

    async def claim_deliveries(
        self,
        *,
        owner: str,
        replica_id: str,
        marketplaces: Sequence[str],
        limit: int,
        lease_seconds: float,
        now: datetime,
    ) -> list[Delivery]:
        """Take up to ``limit`` due deliveries, oldest first, none of which has an earlier
        undelivered event of its release for its Market Plane (order per release)."""
        ...

    async def publication(self, publication_id: int) -> PublicationRecord | None:
        """What the event is built from; None if it is no longer stored."""
        ...

    async def record_delivery(
        self,
        delivery: Delivery,
        *,
        owner: str,
        outcome: DeliveryOutcome,
        now: datetime,
        retry_at: datetime,
    ) -> bool:
        """Record the outcome (and derive the release status again); False if the claim had
        passed to another owner, whose outcome counts instead."""
        ...

    async def mark_overdue(self, *, cutoff: datetime, now: datetime) -> int:
        """Deliveries of events published before ``cutoff`` and not acknowledged yet make
        their release CORRUPT; how many were found."""
        ...

    async def release_claims(self, owner: str) -> None:
        """Hand back (shutdown) what ``owner`` claimed and did not finish."""
        ...


class MarketplacePort(Protocol):
    """Sends events to Market Planes; every failure is an outcome, never an exception."""

    async def deliver(
        self, endpoint: MarketplaceEndpoint, body: bytes, *, event_id: str, event: str
    ) -> DeliveryOutcome:
        """POST ``body`` to the Market Plane."""


# --- Replica identity ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaHold:
    """A process's hold on a replica id: which process (host and pid) heartbeats under it."""

    replica_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime

    def same_process(self, other: ReplicaHold) -> bool:
        return (self.host, self.pid) == (other.host, other.pid)


class ReplicaRegistry(Protocol):
    """Who holds each replica id, by heartbeat (``store.replicas.SqlReplicas``)."""

    async def register(
        self,
        hold: ReplicaHold,
        *,
        stale_before: datetime,
        may_replace: Callable[[ReplicaHold], bool],
    ) -> ReplicaHold | None:
        """Write ``hold`` unless a holder whose heartbeat is after ``stale_before`` is there
        and ``may_replace(holder)`` is False: then return that holder, writing nothing."""
        ...

    async def heartbeat(self, hold: ReplicaHold, *, now: datetime) -> bool:
        """Renew ``hold``'s heartbeat; False if another process holds the id now."""
        ...

    async def deregister(self, hold: ReplicaHold) -> None:
        """Let go of the id (at shutdown), so that a new process may take it at once."""
        ...


# --- Observation ---------------------------------------------------------------------------

# How a Tech Adapter call failed: an error answer (``http``, with its status code), no answer in
# time (``timeout``), no connection or a broken one (``connection``), or an answer that is not
# what the API promises (``protocol``: unreadable, unstorable, too large, missing token).
AdapterErrorKind = Literal["http", "timeout", "connection", "protocol"]


class EngineObserver(Protocol):
    """What the engine reports as it runs (the service's metrics implement it). Every method
    is called on the event loop, on the hot path: implementations must be cheap and never
    raise."""

    def operation_started(self, header: OperationHeader, *, resumed: bool) -> None:
        """A replica claimed the operation: for the first time, or ``resumed`` after another
        owner (a lease takeover, or a hand-back at shutdown)."""
        ...

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        """The operation ended with ``status`` (recorded)."""
        ...

    def task_finished(
        self, endpoint: AdapterEndpoint, action: TaskAction, status: TaskStatus, seconds: float
    ) -> None:
        """A task's adapter call (POST and polling) ended after ``seconds``."""
        ...

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        """An adapter failed a call in a way only the engine sees (its time limit passed)."""
        ...

    def fenced_writes_refused(self, count: int) -> None:
        """``count`` writes (state or lease renewals) were refused: another owner took over."""
        ...

    def publication_delivered(self) -> None:
        """A Market Plane acknowledged a release event."""
        ...

    def publication_failed(self, reason: AdapterErrorKind) -> None:
        """A delivery attempt to a Market Plane failed (it is tried again, or given up)."""
        ...


class QuietObserver:
    """An ``EngineObserver`` that notes nothing (the default, and for tests)."""

    def operation_started(self, header: OperationHeader, *, resumed: bool) -> None:
        return None

    def operation_finished(self, header: OperationHeader, status: OperationStatus) -> None:
        return None

    def task_finished(
        self, endpoint: AdapterEndpoint, action: TaskAction, status: TaskStatus, seconds: float
    ) -> None:
        return None

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        return None

    def fenced_writes_refused(self, count: int) -> None:
        return None

    def publication_delivered(self) -> None:
        return None

    def publication_failed(self, reason: AdapterErrorKind) -> None:
        return None
