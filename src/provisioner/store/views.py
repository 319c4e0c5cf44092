"""Read models: what the API and the CLI show of operations and releases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskView:
    component_id: str
    action: str
    status: str
    depends_on: list[str]
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    public_info: dict[str, Any] | None
    logs: list[dict[str, Any]] | None
    error: dict[str, Any] | None
    is_system: bool
    infrastructure_template_id: str | None


@dataclass(frozen=True, slots=True)
class OperationView:
    id: str
    type: str
    deployment_unit_id: str
    environment: str
    version: str | None
    status: str
    remove_data: bool
    requested_components: list[str] | None
    retry_of: str | None
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[TaskView]


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    operation_id: str
    component_id: str | None
    old_status: str | None
    new_status: str
    at: datetime
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LastOperationView:
    type: str
    status: str
    operation_id: str
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ComponentView:
    component_id: str
    is_system: bool
    status: str
    version: str | None
    infrastructure_template_id: str | None
    depends_on: list[str]
    public_info: dict[str, Any] | None
    last_operation: LastOperationView | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseView:
    deployment_unit_id: str
    environment: str
    status: str
    version: str | None
    public_info: dict[str, Any] | None
    components: list[ComponentView]
    last_operation_id: str | None
    descriptor_operation_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    deployment_unit_id: str
    environment: str
    status: str
    version: str | None
    last_operation_id: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
