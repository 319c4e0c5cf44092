"""Read models: what the API and the CLI show of operations, releases and their history.

They extend the engine's records (an operation's header, its tasks' and components' states), so
a column is declared once, by the record that carries it. Views are read without the columns
that are never shown (``privateInfo``, adapter tokens, stored descriptors): those fields keep
their empty defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from provisioner.domain.publication import PublicationFacts
from provisioner.domain.status import (
    DeliveryStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskStatus,
)
from provisioner.engine.ports import (
    JSON,
    ComponentState,
    Delivery,
    Event,
    OperationHeader,
    TaskState,
)
from provisioner.errors import Problem

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationView(OperationHeader):
    """An operation; ``tasks`` only when one operation is read."""

    status: OperationStatus
    requested_components: tuple[str, ...] | None = None
    retry_of: str | None = None
    cancel_requested: bool = False
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    tasks: tuple[TaskState, ...] = ()
    warnings: tuple[Problem, ...] = ()  # noticed on submission without stopping it


@dataclass(frozen=True, slots=True, kw_only=True)
class EventView(Event):
    """One line of an operation's audit trail, with its sequence number."""

    id: int
    operation_id: str
    principal: str | None = None  # on whose behalf it happened


@dataclass(frozen=True, slots=True)
class LastOperation:
    """The last operation that touched a component, and how its task ended."""

    type: OperationType
    status: TaskStatus
    operation_id: str
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentView(ComponentState):
    """A component of a release."""

    updated_at: datetime

    @property
    def last_operation(self) -> LastOperation | None:
        if self.last_operation_id and self.last_operation_type and self.last_task_status:
            return LastOperation(
                type=self.last_operation_type,
                status=self.last_task_status,
                operation_id=self.last_operation_id,
                finished_at=self.last_finished_at,
            )
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseView:
    """A deployment unit in one environment; ``components`` only when one release is read."""

    deployment_unit_id: str
    environment: str
    status: ReleaseStatus
    version: str | None
    descriptor_operation_id: str | None
    last_operation_id: str | None
    created_at: datetime
    updated_at: datetime
    status_reason: str | None = None
    public_info: JSON | None = None
    components: tuple[ComponentView, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryView(Delivery):
    """One publication to one Market Plane: how far it got."""

    status: DeliveryStatus
    next_attempt_at: datetime | None  # None once delivered or dropped
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    overdue: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationView(PublicationFacts):
    """A release event and its delivery to each Market Plane."""

    deliveries: tuple[DeliveryView, ...] = ()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
