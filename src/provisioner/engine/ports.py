"""What the engine needs from the outside world, declared as interfaces and value objects.

``adapters`` implements ``TechAdapterPort`` and ``AdapterDirectory``; ``store`` implements
``OperationStore``. Tests use in-memory fakes of the same interfaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from provisioner.domain.plan import STEP_FIELDS, Step
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
