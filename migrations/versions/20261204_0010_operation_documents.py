"""Descriptors in a table of their own: an operation's row is rewritten on every state write
(its lease), and on SQLite an UPDATE rebuilds the whole row, a stored descriptor of hundreds of
kilobytes included.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operation_documents",
        sa.Column("operation_id", sa.String(36), nullable=False),
        sa.Column("descriptor", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_operation_documents_operation_id_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", name=op.f("pk_operation_documents")),
    )
    op.execute(
        "INSERT INTO operation_documents (operation_id, descriptor) "
        "SELECT id, descriptor FROM operations WHERE descriptor IS NOT NULL"
    )
    # SQLite 3.35 and later drop a column that no index or constraint names in place.
    op.drop_column("operations", "descriptor")


def downgrade() -> None:
    op.add_column("operations", sa.Column("descriptor", sa.Text(), nullable=True))
    op.execute(
        "UPDATE operations SET descriptor = (SELECT descriptor FROM operation_documents "
        "WHERE operation_documents.operation_id = operations.id)"
    )
    op.drop_table("operation_documents")
