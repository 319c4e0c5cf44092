"""Rows and records: a record's fields are named like its table's columns, so each mapping
between the two is derived from the record's declaration rather than written out again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import Row, Table, Update, bindparam, update

R = TypeVar("R")


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The names of a dataclass's fields, in declaration order."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(item.name for item in fields(cls))
    return names


def records(cls: type[R], rows: Iterable[Row[Any]], **extra: Any) -> list[R]:
    """One ``cls`` per row, from the row's columns named like the record's fields (fields the
    rows do not carry keep their defaults), plus ``extra``."""
    built: list[R] = []
    names: list[str] | None = None
    for row in rows:
        mapping = row._mapping
        if names is None:
            names = [name for name in field_names(cls) if name in mapping and name not in extra]
        built.append(cls(**{name: mapping[name] for name in names}, **extra))
    return built


def record(cls: type[R], row: Row[Any] | Mapping[str, Any], **extra: Any) -> R:
    """One ``cls`` from a row or a mapping of column values (see ``records``)."""
    mapping = row._mapping if isinstance(row, Row) else row
    values = {name: mapping[name] for name in field_names(cls) if name in mapping}
    return cls(**(values | extra))


def values(item: object, names: Iterable[str]) -> dict[str, Any]:
    """The named attributes of ``item``, as column values."""
    return {name: getattr(item, name) for name in names}


def update_by_key(table: Table, keys: Mapping[str, str], columns: Sequence[str]) -> Update:
    """``UPDATE table SET column = :column ... WHERE key = :param ...``.

    ``keys`` maps each key column to the name of its parameter (distinct from the column names,
    which are the SET parameters). Built once, run with many parameter sets (executemany).
    """
    return (
        update(table)
        .where(*(table.c[column] == bindparam(param) for column, param in keys.items()))
        .values({column: bindparam(column) for column in columns})
    )
