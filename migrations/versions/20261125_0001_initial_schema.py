"""Initial schema: operations, tasks, events, releases, components.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status IN ('PENDING', 'RUNNING')")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool = True) -> sa.Column[sa.JSON]:
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("deployment_unit_id", sa.String(512), nullable=False),
        sa.Column("environment", sa.String(512), nullable=False),
        sa.Column("version", sa.String(512), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("remove_data", sa.Boolean(), nullable=False),
        _json("requested_components"),
        sa.Column("retry_of", sa.String(36), nullable=True),
        sa.Column("descriptor", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("replica_id", sa.String(100), nullable=True),
        sa.Column("fencing", sa.Integer(), nullable=False),
        _timestamp("lease_expires_at", nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    op.create_index("ix_operations_status_id", "operations", ["status", "id"])
    op.create_index(
        "ix_operations_unit_environment_id",
        "operations",
        ["deployment_unit_id", "environment", "id"],
    )
    op.create_index(
        "uq_operations_one_active",
        "operations",
        ["deployment_unit_id", "environment"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )

    op.create_table(
        "tasks",
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("component_id", sa.String(512), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("infrastructure_template_id", sa.String(512), nullable=True),
        _json("depends_on", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(1024), nullable=True),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _json("public_info"),
        _json("private_info"),
        _json("logs"),
        _json("error"),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_tasks_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", "component_id", name=op.f("pk_tasks")),
    )

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("component_id", sa.String(512), nullable=True),
        sa.Column("old_status", sa.String(24), nullable=True),
        sa.Column("new_status", sa.String(24), nullable=False),
        _timestamp("at", nullable=False),
        _json("detail"),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_events_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_operation_id_id", "events", ["operation_id", "id"])

    op.create_table(
        "releases",
        sa.Column("deployment_unit_id", sa.String(512), nullable=False),
        sa.Column("environment", sa.String(512), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("version", sa.String(512), nullable=True),
        sa.Column("descriptor_operation_id", sa.String(36), nullable=True),
        sa.Column("last_operation_id", sa.String(36), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("deployment_unit_id", "environment", name=op.f("pk_releases")),
    )
    op.create_index("ix_releases_environment_status", "releases", ["environment", "status"])

    op.create_table(
        "components",
        sa.Column("deployment_unit_id", sa.String(512), nullable=False),
        sa.Column("environment", sa.String(512), nullable=False),
        sa.Column("component_id", sa.String(512), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("member", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("version", sa.String(512), nullable=True),
        sa.Column("infrastructure_template_id", sa.String(512), nullable=True),
        _json("depends_on", nullable=False),
        sa.Column("last_sent_operation_id", sa.String(36), nullable=True),
        sa.Column("last_provisioned_operation_id", sa.String(36), nullable=True),
        _json("public_info"),
        _json("private_info"),
        _json("logs"),
        sa.Column("last_operation_id", sa.String(36), nullable=True),
        sa.Column("last_operation_type", sa.String(24), nullable=True),
        sa.Column("last_task_status", sa.String(24), nullable=True),
        _timestamp("last_finished_at", nullable=True),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint(
            "deployment_unit_id", "environment", "component_id", name=op.f("pk_components")
        ),
    )


def downgrade() -> None:
    op.drop_table("components")
    op.drop_index("ix_releases_environment_status", table_name="releases")
    op.drop_table("releases")
    op.drop_index("ix_events_operation_id_id", table_name="events")
    op.drop_table("events")
    op.drop_table("tasks")
    op.drop_index("uq_operations_one_active", table_name="operations")
    op.drop_index("ix_operations_unit_environment_id", table_name="operations")
    op.drop_index("ix_operations_status_id", table_name="operations")
    op.drop_table("operations")
