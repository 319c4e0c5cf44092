"""The retention rules cover the whole schema: a table that refers to an operation (or to what
goes with one) is purged with it, and a column that names an operation keeps it."""

from __future__ import annotations

from provisioner.store.models import Base
from provisioner.store.retention import NAMING, TABLES


def test_every_table_that_refers_to_a_purged_row_is_purged_with_it() -> None:
    purged = set(TABLES)
    for table in Base.metadata.tables.values():
        for column in table.columns:
            for key in column.foreign_keys:
                if key.column.table.name in purged:
                    assert table.name in purged, f"{table.name}.{column.name} is left dangling"


def test_every_column_that_names_an_operation_keeps_it() -> None:
    """A new column naming an operation (``*_operation_id``) must be added to ``NAMING``, or
    refer to the operation with a foreign key (and go with it)."""
    naming = {(column.table.name, column.name) for column in NAMING}
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if column.foreign_keys or not column.name.endswith("operation_id"):
                continue
            assert (table.name, column.name) in naming, f"{table.name}.{column.name}"
