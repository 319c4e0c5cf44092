"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from provisioner.api.params import Identifier
from provisioner.domain.changes import Change
from provisioner.domain.publication import PublicationEvent
from provisioner.domain.status import (
    OVERRIDE_REASON_CHARACTERS,
    ComponentStatus,
    DeliveryStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskAction,
    TaskStatus,
)


class Schema(BaseModel):
    # from_attributes: a response is built with model_validate from the read model it shows.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class PublicInfo(Schema):
    public_info: dict[str, Any] | None = None


def _as_info(value: Any) -> Any:
    return value if isinstance(value, PublicInfo) else {"public_info": value}


# ``info: {publicInfo}`` on the wire, read from a read model's ``public_info``.
Info = Annotated[
    PublicInfo,
    BeforeValidator(_as_info),
    Field(validation_alias=AliasChoices("public_info", "info")),
]


class TaskValidationOut(Schema):
    valid: bool
    errors: list[str]


class TaskOut(Schema):
    component_id: str
    action: TaskAction
    status: TaskStatus
    depends_on: list[str]
    infrastructure_template_id: str | None = Field(
        default=None, description="the Tech Adapter that runs it (none: a system step without one)"
    )
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    info: Info
    logs: list[dict[str, Any]] | None
    error: dict[str, Any] | None
    validation: TaskValidationOut | None = Field(
        default=None,
        description="a deploy's validation of the component by its Tech Adapter, before "
        "anything was provisioned (null: not validated)",
    )


class OperationOut(Schema):
    id: str
    type: OperationType
    deployment_unit_id: str
    environment: str
    version: str | None
    status: OperationStatus
    remove_data: bool
    components: list[str] | None = Field(
        validation_alias=AliasChoices("requested_components", "components"),
        description="the components asked for, if a subset",
    )
    retry_of: str | None
    requested_by: str | None = Field(description="who asked: a token's name or a JWT's subject")
    request_id: str | None = Field(
        default=None,
        description="the X-Request-Id of the request that submitted it; its adapter calls carry it",
    )
    trace_id: str | None = Field(
        default=None, description="the W3C trace id of that request; its adapter calls carry it"
    )
    cancel_requested: bool
    error: str | None
    refs: list[str] | None = Field(
        default=None, description="UPDATE_ACL: the users and groups it grants access"
    )
    reason: str | None = Field(
        default=None, description="OVERRIDE: why the operator marked the component by hand"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[TaskOut]
    warnings: list[ProblemItem] = Field(
        default_factory=list,
        description="what was noticed on submission without stopping it: a key repeated with "
        "the same value (path: where), a policy's warn message (path: the policy's package)",
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
    principal: str | None = Field(description="on whose behalf it happened")


class EventList(Schema):
    items: list[EventOut]


class LastOperationOut(Schema):
    type: OperationType
    status: TaskStatus
    operation_id: str
    finished_at: datetime | None


class ComponentOut(Schema):
    component_id: str
    status: ComponentStatus
    version: str | None
    infrastructure_template_id: str | None
    depends_on: list[str]
    info: Info
    refs: list[str] | None = Field(
        default=None,
        description="the users and groups its last successful ACL update granted access "
        "(null: never updated since it was deployed)",
    )
    last_operation: LastOperationOut | None
    updated_at: datetime


_STATUS_REASON = Field(
    default=None,
    description="why the release has its status, when the status alone does not say: the "
    "Market Plane event not acknowledged yet (IN_PROGRESS) or past the publication timeout "
    "(CORRUPT), with its last error",
)


class ReleaseOut(Schema):
    deployment_unit_id: str
    environment: str
    status: ReleaseStatus
    status_reason: str | None = _STATUS_REASON
    version: str | None
    info: Info
    components: list[ComponentOut]
    last_operation_id: str | None
    created_at: datetime
    updated_at: datetime
    descriptor: dict[str, Any] | None = Field(
        default=None, description="with includeDescriptor=true: the deployed descriptor"
    )


class ReleaseSummaryOut(Schema):
    deployment_unit_id: str
    environment: str
    status: ReleaseStatus
    status_reason: str | None = _STATUS_REASON
    version: str | None
    last_operation_id: str | None
    updated_at: datetime


class ReleasePage(Schema):
    items: list[ReleaseSummaryOut]
    next_cursor: str | None


class DeliveryOut(Schema):
    marketplace: str = Field(description="the Market Plane's name in the registry")
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="while PENDING: the next attempt")
    delivered_at: datetime | None = Field(description="when the Market Plane acknowledged it")
    last_status_code: int | None = Field(description="of the last attempt's answer")
    last_error: str | None = Field(description="why the last failed attempt failed")
    overdue: bool = Field(description="not acknowledged within the publication timeout")


class PublicationOut(Schema):
    event_id: str = Field(description="the idempotency key the Market Plane receives")
    sequence: int = Field(
        validation_alias=AliasChoices("publication_id", "sequence"),
        description="increases with every event of the release",
    )
    event: PublicationEvent
    operation_id: str
    version: str | None
    occurred_at: datetime
    deliveries: list[DeliveryOut]


class PublicationPage(Schema):
    items: list[PublicationOut]
    next_cursor: str | None


class UndeployRequest(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    deployment_unit_id: Identifier
    environment: Identifier
    remove_data: StrictBool = False  # a destructive flag: "yes" or 1 is not taken as true
    # The service refuses an empty list with its own message; the document says so.
    components: list[Identifier] | None = Field(
        default=None,
        description="undeploy only these components",
        json_schema_extra={"minItems": 1},
    )


class AclRequest(Schema):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    refs: list[str] = Field(min_length=1, description="users and groups, e.g. user:alice")


class ComponentStatusRequest(Schema):
    """An operator's repair of a CORRUPT component, after fixing its platform by hand."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    status: Literal[ComponentStatus.DEPLOYED, ComponentStatus.NOT_DEPLOYED] = Field(
        description="what the component is now, as the operator found it"
    )
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=OVERRIDE_REASON_CHARACTERS
        ),
    ] = Field(description="why: recorded on the operation and its events")


class ValidationItem(Schema):
    component_id: str
    valid: bool
    errors: list[str]


class ValidationOut(Schema):
    valid: bool = Field(description="no component is invalid and no policy denies")
    environment: str | None = Field(default=None, description="the target environment")
    components: list[ValidationItem]
    denials: list[ProblemItem] = Field(
        default_factory=list, description="each policy deny message (path: its package)"
    )
    warnings: list[ProblemItem] = Field(
        default_factory=list,
        description="policy warn messages (path: the package) and what reading the "
        "descriptor noticed (path: where)",
    )


class PlannedStepOut(Schema):
    component_id: str
    action: TaskAction
    depends_on: list[str] = Field(description="the steps of this plan that run before it")
    change: Change
    current_status: ComponentStatus
    current_version: str | None
    target_version: str | None


class PlanOut(Schema):
    type: OperationType
    deployment_unit_id: str
    environment: str
    version: str | None
    steps: list[PlannedStepOut] = Field(description="in the order they may run")


class DryRunOut(Schema):
    """What a deploy or undeploy would do; nothing was stored and no adapter was called."""

    plan: PlanOut
    warnings: list[ProblemItem]


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
    required_scope: str | None = Field(default=None, description="403: the scope the request needs")


class Health(Schema):
    status: str
    database: str | None = None
    revision: str | None = None


class LatencyOut(Schema):
    samples: int = Field(description="answered requests the percentiles are taken over")
    p50: float | None
    p90: float | None
    p99: float | None


class AdapterErrorOut(Schema):
    kind: Literal["http", "timeout", "connection", "protocol"]
    status_code: int | None
    cause: str | None
    at: datetime


class TechAdapterOut(Schema):
    infrastructure_template_id: str
    environment: str | None = Field(description="null: every environment without a URL of its own")
    url: str = Field(description="without credentials")
    timeout_seconds: float
    max_concurrency: int | None
    requests: int = Field(description="HTTP requests sent (by this replica, since it started)")
    errors: int = Field(description="of which failed, or answered unusably")
    requests_in_flight: int = Field(description="HTTP requests awaiting an answer now")
    calls_in_flight: int = Field(description="adapter operations in progress (holding a slot)")
    calls_waiting: int = Field(description="adapter operations waiting for a slot")
    last_success_at: datetime | None
    last_error: AdapterErrorOut | None
    latency_seconds: LatencyOut = Field(
        validation_alias=AliasChoices("latency", "latency_seconds"),
        description="of the most recent answered requests",
    )


class TechAdapterList(Schema):
    replica_id: str = Field(description="the replica that answered: the figures are its own")
    items: list[TechAdapterOut]
