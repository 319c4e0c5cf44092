"""Governance: each task's validation, each operation's warnings and the release's status
before it (so that an operation that touched nothing leaves the release as it was).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("release_status_before", sa.String(24), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("validation", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("validation")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("release_status_before")
        batch.drop_column("warnings")
