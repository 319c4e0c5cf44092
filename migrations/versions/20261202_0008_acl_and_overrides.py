"""ACL updates and overrides as operations: the refs an UPDATE_ACL grants and the reason of an
OVERRIDE on the operation, and the refs a component was last granted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("refs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(1000), nullable=True))
    with op.batch_alter_table("components") as batch:
        batch.add_column(sa.Column("refs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("components") as batch:
        batch.drop_column("refs")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("reason")
        batch.drop_column("refs")
