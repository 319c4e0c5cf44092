"""Who asked: the principal of every operation and every event.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(256), nullable=True))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("principal", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("principal")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("requested_by")
