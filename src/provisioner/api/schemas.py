"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.alias_generators import to_camel

from provisioner.api.params import Identifier
from provisioner.errors import Problem
from provisioner.store.views import (
    ComponentView,
    OperationView,
    ReleaseView,
    TaskView,
)

OperationTypeName = Literal["DEPLOY", "UNDEPLOY"]
OperationStatusName = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
TaskStatusName = Literal["WAITING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"]
ReleaseStatusName = Literal[
    "NOT_DEPLOYED", "IN_PROGRESS", "DEPLOYED", "PARTIALLY_DEPLOYED", "CORRUPT"
]
ComponentStatusName = Literal["NOT_DEPLOYED", "IN_PROGRESS", "DEPLOYED", "CORRUPT"]


class Schema(BaseModel):
    # from_attributes: a schema whose fields are a read model's is built with model_validate.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class PublicInfo(Schema):
    public_info: dict[str, Any] | None = None


class TaskOut(Schema):
    component_id: str
    action: Literal["PROVISION", "UNPROVISION"]
    status: TaskStatusName
    depends_on: list[str]
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    info: PublicInfo
    logs: list[dict[str, Any]] | None
    error: dict[str, Any] | None

    @classmethod
    def of(cls, view: TaskView) -> TaskOut:
        return cls(
            component_id=view.component_id,
            action=view.action,
            status=view.status,
            depends_on=view.depends_on,
            attempts=view.attempts,
            started_at=view.started_at,
            finished_at=view.finished_at,
            info=PublicInfo(public_info=view.public_info),
            logs=view.logs,
            error=view.error,
        )


class OperationOut(Schema):
    id: str
    type: OperationTypeName
    deployment_unit_id: str
    environment: str
    version: str | None
    status: OperationStatusName
    remove_data: bool
    components: list[str] | None = Field(description="the components asked for, if a subset")
    retry_of: str | None
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[TaskOut]
    warnings: list[ProblemItem] = Field(
        default_factory=list,
        description="what was noticed on submission without stopping it, such as a key "
        "repeated with the same value (in the 202 answer of a deploy; not stored)",
    )

    @classmethod
    def of(cls, view: OperationView, *, warnings: Iterable[Problem] = ()) -> OperationOut:
        return cls(
            id=view.id,
            type=view.type,
            deployment_unit_id=view.deployment_unit_id,
            environment=view.environment,
            version=view.version,
            status=view.status,
            remove_data=view.remove_data,
            components=view.requested_components,
            retry_of=view.retry_of,
            cancel_requested=view.cancel_requested,
            error=view.error,
            created_at=view.created_at,
            started_at=view.started_at,
            finished_at=view.finished_at,
            tasks=[TaskOut.of(task) for task in view.tasks],
            warnings=[ProblemItem(path=item.path, message=item.message) for item in warnings],
        )


class OperationPage(Schema):
    items: list[OperationOut]
    next_cursor: str | None


class EventOut(Schema):
    id: int
    operation_id: str
    component_id: str | None
    old_status: str | None
    new_status: str
    at: datetime
    detail: dict[str, Any] | None


class EventList(Schema):
    items: list[EventOut]


class LastOperationOut(Schema):
    type: OperationTypeName
    status: TaskStatusName
    operation_id: str
    finished_at: datetime | None


class ComponentOut(Schema):
    component_id: str
    status: ComponentStatusName
    version: str | None
    infrastructure_template_id: str | None
    depends_on: list[str]
    info: PublicInfo
    last_operation: LastOperationOut | None
    updated_at: datetime

    @classmethod
    def of(cls, view: ComponentView) -> ComponentOut:
        last = view.last_operation
        return cls(
            component_id=view.component_id,
            status=view.status,
            version=view.version,
            infrastructure_template_id=view.infrastructure_template_id,
            depends_on=view.depends_on,
            info=PublicInfo(public_info=view.public_info),
            last_operation=LastOperationOut(
                type=last.type,
                status=last.status,
                operation_id=last.operation_id,
                finished_at=last.finished_at,
            )
            if last
            else None,
            updated_at=view.updated_at,
        )


class ReleaseOut(Schema):
    deployment_unit_id: str
    environment: str
    status: ReleaseStatusName
    version: str | None
    info: PublicInfo
    components: list[ComponentOut]
    last_operation_id: str | None
    created_at: datetime
    updated_at: datetime
    descriptor: dict[str, Any] | None = Field(
        default=None, description="with includeDescriptor=true: the deployed descriptor"
    )

    @classmethod
    def of(cls, view: ReleaseView, descriptor: dict[str, Any] | None = None) -> ReleaseOut:
        return cls(
            deployment_unit_id=view.deployment_unit_id,
            environment=view.environment,
            status=view.status,
            version=view.version,
            info=PublicInfo(public_info=view.public_info),
            components=[ComponentOut.of(component) for component in view.components],
            last_operation_id=view.last_operation_id,
            created_at=view.created_at,
            updated_at=view.updated_at,
            descriptor=descriptor,
        )


class ReleaseSummaryOut(Schema):
    deployment_unit_id: str
    environment: str
    status: ReleaseStatusName
    version: str | None
    last_operation_id: str | None
    updated_at: datetime


class ReleasePage(Schema):
    items: list[ReleaseSummaryOut]
    next_cursor: str | None


class UndeployRequest(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    deployment_unit_id: Identifier
    environment: Identifier
    remove_data: StrictBool = False  # a destructive flag: "yes" or 1 is not taken as true
    components: list[Identifier] | None = None


class AclRequest(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    refs: list[str] = Field(min_length=1, description="users and groups, e.g. user:alice")


class ProvisioningResultOut(Schema):
    status: Literal["COMPLETED", "FAILED"]
    info: PublicInfo
    logs: list[dict[str, Any]]
    error: dict[str, Any] | None


class ValidationItem(Schema):
    component_id: str
    valid: bool
    errors: list[str]


class ValidationOut(Schema):
    valid: bool
    components: list[ValidationItem]


class ReverseProvisioningRequest(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    infrastructure_template_id: str = Field(min_length=1)
    use_case_template_id: str = Field(min_length=1)
    environment: Identifier
    params: dict[str, Any] | None = None
    catalog_info: dict[str, Any] | None = None


class ReverseProvisioningOut(Schema):
    status: Literal["COMPLETED", "FAILED"]
    updates: dict[str, Any]
    logs: list[dict[str, Any]]


class ProblemItem(Schema):
    path: str
    message: str


class ProblemOut(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemItem] | None = Field(
        default=None, description="every individual problem, with the path it concerns"
    )
    operation_id: str | None = Field(default=None, description="409: the active operation")
    adapter_error: dict[str, Any] | None = Field(
        default=None, description="502: what the Tech Adapter answered"
    )


class Health(Schema):
    status: str
    database: str | None = None
    revision: str | None = None
