"""Rows and records: a record's fields are named like its table's columns, so each mapping
between the two is derived from the record's declaration rather than written out again."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Dialect,
    Insert,
    Row,
    Table,
    Update,
    bindparam,
    update,
)
from sqlalchemy import insert as sql_insert

from provisioner.store.database import driver_execute

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


def insert_columns(table: Table, columns: Sequence[str], *, dialect: Any = None) -> Any:
    """``INSERT INTO table (column, ...) VALUES (:column, ...)``, for many parameter sets;
    ``dialect``: a dialect module (``sqlalchemy.dialects.sqlite``) whose own INSERT to build
    (for its ``on_conflict_do_nothing``)."""
    build = sql_insert if dialect is None else dialect.insert
    return build(table).values({column: bindparam(column) for column in columns})


_Processor = Callable[[Any], Any]


def _constant(value: Any) -> _Processor:
    return lambda _: value


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The SQL text and, for each positional parameter, its name and how its value is made:
    the bind processor of its type, or the statement's own value (a literal in the SQL)."""

    sql: str
    names: tuple[str | None, ...]  # None: the statement's own value
    processors: tuple[_Processor | None, ...]

    def row(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        row = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = None if name is None else params[name]
            row.append(value if process is None else process(value))
        return tuple(row)


class Prepared:
    """A statement on a hot write path, compiled once per database and run as driver SQL.

    ``Connection.execute`` looks the statement up in the compiled cache and runs every
    parameter set through its generic parameter handling on each call; for the engine's state
    writes (a few rows per transaction, hundreds of transactions a second) that cost more than
    the statements themselves. This takes the SQL text, the order of its positional parameters and
    each one's bind processor from the compiled statement once, and runs it on the driver's
    cursor (``driver_execute``): the values are stored exactly as ``execute`` would store them
    (the column types' own processors), and errors are SQLAlchemy's as before. A driver with
    named parameters (psycopg) takes the generic path.
    """

    def __init__(self, statement: Insert | Update) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str, str], _Compiled | None] = {}

    def execute(
        self, conn: Connection, params: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Run with these parameter sets (one set: a single execution); the rows it returns
        (a statement with RETURNING, run with one set)."""
        dialect = conn.dialect
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        if key not in self._compiled:
            self._compiled[key] = self._compile(dialect)
        compiled = self._compiled[key]
        if compiled is None:
            result = conn.execute(self.statement, list(params))
            return [tuple(row) for row in result] if result.returns_rows else []
        return driver_execute(conn, compiled.sql, [compiled.row(item) for item in params])

    def _compile(self, dialect: Dialect) -> _Compiled | None:
        compiled = self.statement.compile(dialect=dialect)
        names = compiled.positiontup
        if names is None:
            return None
        given: list[str | None] = []
        processors: list[_Processor | None] = []
        for name in names:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                given.append(name)
                processors.append(process)
            else:  # a value the statement holds, such as a function's argument
                value = bind.effective_value
                given.append(None)
                processors.append(_constant(value if process is None else process(value)))
        return _Compiled(compiled.string, tuple(given), tuple(processors))


_LENGTH = re.compile(r"\(\d+\)$")  # VARCHAR(36): a type's length


@dataclass(frozen=True, slots=True)
class Unnested:
    """Rows handed to PostgreSQL as one array per column and read back as a table by
    ``unnest``: a statement that writes any number of rows, of several tables at once, in a
    fixed number of parameters (so it is prepared once, and is one round trip).

    ``columns`` maps each parameter (a key of the rows) to the column whose type it has; each
    value is stored as ``execute`` would store it (the column type's own bind processor). The
    arrays' types carry no length: a cast to ``VARCHAR(n)`` would cut a longer value short,
    where storing it in the column refuses it, as ``execute``'s statements do.
    """

    names: tuple[str, ...]
    types: tuple[str, ...]
    processors: tuple[_Processor | None, ...]

    @classmethod
    def of(cls, dialect: Dialect, columns: Mapping[str, Any]) -> Unnested:
        return cls(
            names=tuple(columns),
            types=tuple(
                _LENGTH.sub("", column.type.compile(dialect=dialect)) for column in columns.values()
            ),
            processors=tuple(
                column.type.dialect_impl(dialect).bind_processor(dialect)
                for column in columns.values()
            ),
        )

    def source(self, dialect: Dialect, alias: str, first: int) -> str:
        """``unnest($first::type[], ...) AS alias(name, ...)``, its arrays numbered from
        ``first`` in asyncpg's parameter style (``$n``)."""
        quote = dialect.identifier_preparer.quote
        arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(self.types))
        return f"unnest({arrays}) AS {alias}({', '.join(quote(name) for name in self.names)})"

    def arrays(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """The parameters: one array per column, of the rows' processed values."""
        return [
            [row[name] for row in rows] if process is None else [process(row[name]) for row in rows]
            for name, process in zip(self.names, self.processors, strict=True)
        ]
