"""Market Plane publication: the outbox of release events, their deliveries, the members'
public info fixed at publication, and the reason of a release's status.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'PENDING'")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str) -> sa.Column[sa.JSON]:
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
    op.create_table(
        "publications",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("deployment_unit_id", sa.String(512), nullable=False),
        sa.Column("environment", sa.String(512), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("version", sa.String(512), nullable=True),
        _json("detail"),
        _timestamp("occurred_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_publications_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publications")),
        sa.UniqueConstraint("event_id", name=op.f("uq_publications_event_id")),
    )
    op.create_index(
        "ix_publications_unit_environment_id",
        "publications",
        ["deployment_unit_id", "environment", "id"],
    )
    op.create_table(
        "published_components",
        sa.Column("publication_id", SERIAL, nullable=False),
        sa.Column("component_id", sa.String(512), nullable=False),
        _json("public_info"),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name=op.f("fk_published_components_publication_id_publications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "publication_id", "component_id", name=op.f("pk_published_components")
        ),
    )
    op.create_table(
        "deliveries",
        sa.Column("publication_id", SERIAL, nullable=False),
        sa.Column("marketplace", sa.String(200), nullable=False),
        sa.Column("deployment_unit_id", sa.String(512), nullable=False),
        sa.Column("environment", sa.String(512), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("next_attempt_at", nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_replica", sa.String(100), nullable=True),
        _timestamp("claim_expires_at", nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        _timestamp("last_attempt_at", nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("delivered_at", nullable=True),
        _timestamp("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name=op.f("fk_deliveries_publication_id_publications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("publication_id", "marketplace", name=op.f("pk_deliveries")),
    )
    op.create_index(
        "ix_deliveries_pending_order",
        "deliveries",
        ["deployment_unit_id", "environment", "marketplace", "publication_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_deliveries_status_next_attempt_at", "deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_next_attempt_at", table_name="deliveries")
    op.drop_index("ix_deliveries_pending_order", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("published_components")
    op.drop_index("ix_publications_unit_environment_id", table_name="publications")
    op.drop_table("publications")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("status_reason")
