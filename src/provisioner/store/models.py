"""The database schema (SQLAlchemy 2 typed declarative); alembic migrations follow it."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

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
from provisioner.errors import Problem

ID = 36  # operation ids are UUIDs
NAME = 512  # deployment unit, component and template ids
STATUS = 24
PRINCIPAL = 256  # an API token's name or a JWT's subject
REQUEST_ID = 128  # an X-Request-Id (provisioner.correlation.MAX_REQUEST_ID)
TRACE_ID = 32  # a W3C trace id: 32 hex digits

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A status stored as its text, read back as the enum (so nothing downstream parses it)."""

    impl = String(STATUS)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


JsonValue = JSON(none_as_null=True)


class IdTuple(TypeDecorator[tuple[str, ...]]):
    """A list of ids stored as JSON, read back as an immutable tuple."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else list(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...]:
        return tuple(value or ())


class RefTuple(TypeDecorator[tuple[str, ...] | None]):
    """Users and groups (ACL refs) stored as a JSON list, read back as a tuple; NULL: none."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else list(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...] | None:
        return None if value is None else tuple(str(item) for item in value)


REASON = OVERRIDE_REASON_CHARACTERS  # an operator's reason for an override


class ProblemTuple(TypeDecorator[tuple[Problem, ...]]):
    """Problems (``{path, message}``) stored as a JSON list, read back as a tuple of them."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not value:
            return None
        return [{"path": item.path, "message": item.message} for item in value]

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[Problem, ...]:
        return tuple(Problem(str(item["path"]), str(item["message"])) for item in value or ())


ACTIVE = text("status IN ('PENDING', 'RUNNING')")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonValue}


class OperationRow(Base):
    """A deploy or undeploy of one deployment unit in one environment."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    type: Mapped[OperationType] = mapped_column(EnumText(OperationType))
    deployment_unit_id: Mapped[str] = mapped_column(String(NAME))
    environment: Mapped[str] = mapped_column(String(NAME))
    version: Mapped[str | None] = mapped_column(String(NAME))
    status: Mapped[OperationStatus] = mapped_column(EnumText(OperationStatus))
    remove_data: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_components: Mapped[Any | None] = mapped_column(JsonValue)
    retry_of: Mapped[str | None] = mapped_column(String(ID))
    requested_by: Mapped[str | None] = mapped_column(String(PRINCIPAL))
    # The submitting request's X-Request-Id and W3C trace id (correlation of background calls).
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID))
    trace_id: Mapped[str | None] = mapped_column(String(TRACE_ID))
    # UPDATE_ACL: the refs to grant; OVERRIDE: why the operator marked the component.
    refs: Mapped[tuple[str, ...] | None] = mapped_column(RefTuple, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(REASON))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # What was noticed on submission without stopping it: the descriptor loader's warnings and
    # the policies' warn messages.
    warnings: Mapped[tuple[Problem, ...]] = mapped_column(ProblemTuple, nullable=True)
    # The release's status when the operation was submitted: an operation that touched nothing
    # (refused by validation, cancelled before anything ran) leaves the release so.
    release_status_before: Mapped[ReleaseStatus | None] = mapped_column(EnumText(ReleaseStatus))
    owner: Mapped[str | None] = mapped_column(String(200))
    replica_id: Mapped[str | None] = mapped_column(String(100))
    fencing: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_operations_unit_environment_id", "deployment_unit_id", "environment", "id"),
        Index("ix_operations_status_id", "status", "id"),
        # Listing one environment's operations newest first, however few of them there are.
        Index("ix_operations_environment_id", "environment", "id"),
        # At most one active operation per deployment unit and environment, across replicas.
        Index(
            "uq_operations_one_active",
            "deployment_unit_id",
            "environment",
            unique=True,
            postgresql_where=ACTIVE,
            sqlite_where=ACTIVE,
        ),
    )


class OperationDocumentRow(Base):
    """The unit descriptor an operation deploys (or deployed), as JSON text. Written once with
    the operation and kept apart from its row, which every state write updates (its lease):
    SQLite rewrites a whole row to update it, and a descriptor can be hundreds of kilobytes."""

    __tablename__ = "operation_documents"

    operation_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    descriptor: Mapped[str] = mapped_column(Text)


class TaskRow(Base):
    """One step of an operation: provision or unprovision one component (or the system)."""

    __tablename__ = "tasks"

    operation_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[TaskAction] = mapped_column(EnumText(TaskAction))
    status: Mapped[TaskStatus] = mapped_column(EnumText(TaskStatus))
    is_system: Mapped[bool] = mapped_column(Boolean)
    infrastructure_template_id: Mapped[str | None] = mapped_column(String(NAME))
    depends_on: Mapped[tuple[str, ...]] = mapped_column(IdTuple)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    token: Mapped[str | None] = mapped_column(String(1024))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    public_info: Mapped[Any | None] = mapped_column(JsonValue)
    private_info: Mapped[Any | None] = mapped_column(JsonValue)
    logs: Mapped[Any | None] = mapped_column(JsonValue)
    error: Mapped[Any | None] = mapped_column(JsonValue)
    validation: Mapped[Any | None] = mapped_column(JsonValue)  # the adapter's verdict, if asked


class EventRow(Base):
    """One status transition: the audit trail of an operation."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    operation_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("operations.id", ondelete="CASCADE")
    )
    component_id: Mapped[str | None] = mapped_column(String(NAME))
    old_status: Mapped[str | None] = mapped_column(String(STATUS))
    new_status: Mapped[str] = mapped_column(String(STATUS))
    at: Mapped[datetime]
    detail: Mapped[Any | None] = mapped_column(JsonValue)
    principal: Mapped[str | None] = mapped_column(String(PRINCIPAL))

    __table_args__ = (Index("ix_events_operation_id_id", "operation_id", "id"),)


class ReleaseRow(Base):
    """The state of one deployment unit in one environment."""

    __tablename__ = "releases"

    deployment_unit_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    environment: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    status: Mapped[ReleaseStatus] = mapped_column(EnumText(ReleaseStatus))
    version: Mapped[str | None] = mapped_column(String(NAME))
    descriptor_operation_id: Mapped[str | None] = mapped_column(String(ID))
    last_operation_id: Mapped[str | None] = mapped_column(String(ID))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Why the status is what it is, when the status alone does not say (a Market Plane that
    # has not acknowledged an event).
    status_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_releases_environment_status", "environment", "status"),
        # Listing the releases of one status in key order (the dashboard's filter).
        Index("ix_releases_status_unit_environment", "status", "deployment_unit_id", "environment"),
        # Retention keeps what these name (store/retention.py looks each candidate up).
        Index("ix_releases_last_operation_id", "last_operation_id"),
        Index("ix_releases_descriptor_operation_id", "descriptor_operation_id"),
    )


class ComponentRow(Base):
    """One component (or the system, ``is_system``) of a release."""

    __tablename__ = "components"

    deployment_unit_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    environment: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    component_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    is_system: Mapped[bool] = mapped_column(Boolean)
    member: Mapped[bool] = mapped_column(Boolean)  # part of the last deployed descriptor
    status: Mapped[ComponentStatus] = mapped_column(EnumText(ComponentStatus))
    version: Mapped[str | None] = mapped_column(String(NAME))
    infrastructure_template_id: Mapped[str | None] = mapped_column(String(NAME))
    depends_on: Mapped[tuple[str, ...]] = mapped_column(IdTuple)
    last_sent_operation_id: Mapped[str | None] = mapped_column(String(ID))
    last_provisioned_operation_id: Mapped[str | None] = mapped_column(String(ID))
    public_info: Mapped[Any | None] = mapped_column(JsonValue)
    private_info: Mapped[Any | None] = mapped_column(JsonValue)
    logs: Mapped[Any | None] = mapped_column(JsonValue)
    # The users and groups its last successful ACL update granted access (None: never updated).
    refs: Mapped[tuple[str, ...] | None] = mapped_column(RefTuple, nullable=True)
    last_operation_id: Mapped[str | None] = mapped_column(String(ID))
    last_operation_type: Mapped[OperationType | None] = mapped_column(EnumText(OperationType))
    last_task_status: Mapped[TaskStatus | None] = mapped_column(EnumText(TaskStatus))
    last_finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        # Retention keeps the operations a component names (store/retention.py).
        Index("ix_components_last_operation_id", "last_operation_id"),
        Index("ix_components_last_sent_operation_id", "last_sent_operation_id"),
        Index("ix_components_last_provisioned_operation_id", "last_provisioned_operation_id"),
    )


MARKETPLACE = 200  # a Market Plane's name in the registry
PENDING_DELIVERY = text("status = 'PENDING'")


class PublicationRow(Base):
    """An event for the Market Planes (the outbox), written in the transaction of the change it
    announces. ``id`` orders the events of a release (their ``sequence``)."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(ID), unique=True)
    event: Mapped[PublicationEvent] = mapped_column(EnumText(PublicationEvent))
    deployment_unit_id: Mapped[str] = mapped_column(String(NAME))
    environment: Mapped[str] = mapped_column(String(NAME))
    operation_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("operations.id", ondelete="CASCADE")
    )
    version: Mapped[str | None] = mapped_column(String(NAME))
    detail: Mapped[Any | None] = mapped_column(JsonValue)  # ACL_UPDATED: componentId, refs
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_publications_unit_environment_id", "deployment_unit_id", "environment", "id"),
        # An operation's publications: retention, and the cascade when an operation goes.
        Index("ix_publications_operation_id", "operation_id"),
    )


class PublishedComponentRow(Base):
    """The public info of a member a DEPLOYED event's operation did not provision, as it was
    when the event was published: later operations change the component, not what the event
    says (the others' is in the operation's task rows)."""

    __tablename__ = "published_components"

    publication_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("publications.id", ondelete="CASCADE"),
        primary_key=True,
    )
    component_id: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    public_info: Mapped[Any | None] = mapped_column(JsonValue)


class DeliveryRow(Base):
    """One publication to one Market Plane: claimed by a replica with a lease, retried with
    backoff until acknowledged, after the earlier events of its release."""

    __tablename__ = "deliveries"

    publication_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("publications.id", ondelete="CASCADE"),
        primary_key=True,
    )
    marketplace: Mapped[str] = mapped_column(String(MARKETPLACE), primary_key=True)
    deployment_unit_id: Mapped[str] = mapped_column(String(NAME))
    environment: Mapped[str] = mapped_column(String(NAME))
    status: Mapped[DeliveryStatus] = mapped_column(EnumText(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_replica: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None]
    # Not acknowledged within the publication timeout: its release is CORRUPT until it is.
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]  # when the event was published

    __table_args__ = (
        # The in-order rule: the earliest undelivered event of a release for a Market Plane.
        Index(
            "ix_deliveries_pending_order",
            "deployment_unit_id",
            "environment",
            "marketplace",
            "publication_id",
            postgresql_where=PENDING_DELIVERY,
            sqlite_where=PENDING_DELIVERY,
        ),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )


NOT_REVOKED = text("revoked_at IS NULL")


class ApiTokenRow(Base):
    """An API token: its public id (part of the token's text), name and scopes, and a salted
    hash of its secret. The secret itself is never stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(PRINCIPAL))
    scopes: Mapped[tuple[str, ...]] = mapped_column(IdTuple)
    salt: Mapped[str] = mapped_column(String(64))  # hex
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256(salt, secret)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        # A name is one active token at a time; revoked ones are kept for the record.
        Index(
            "uq_api_tokens_active_name",
            "name",
            unique=True,
            postgresql_where=NOT_REVOKED,
            sqlite_where=NOT_REVOKED,
        ),
    )


class ReplicaRow(Base):
    """A running replica's heartbeat: a process refuses to start with the id of a live one."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


operations = cast(Table, OperationRow.__table__)
operation_documents = cast(Table, OperationDocumentRow.__table__)
tasks = cast(Table, TaskRow.__table__)
events = cast(Table, EventRow.__table__)
releases = cast(Table, ReleaseRow.__table__)
components = cast(Table, ComponentRow.__table__)
publications = cast(Table, PublicationRow.__table__)
published_components = cast(Table, PublishedComponentRow.__table__)
deliveries = cast(Table, DeliveryRow.__table__)
api_tokens = cast(Table, ApiTokenRow.__table__)
replicas = cast(Table, ReplicaRow.__table__)
