"""History that scales: indexes for filtered listings and for retention.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_operations_environment_id", "operations", ["environment", "id"]),
    (
        "ix_releases_status_unit_environment",
        "releases",
        ["status", "deployment_unit_id", "environment"],
    ),
    ("ix_releases_last_operation_id", "releases", ["last_operation_id"]),
    ("ix_releases_descriptor_operation_id", "releases", ["descriptor_operation_id"]),
    ("ix_components_last_operation_id", "components", ["last_operation_id"]),
    ("ix_components_last_sent_operation_id", "components", ["last_sent_operation_id"]),
    (
        "ix_components_last_provisioned_operation_id",
        "components",
        ["last_provisioned_operation_id"],
    ),
    ("ix_publications_operation_id", "publications", ["operation_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
