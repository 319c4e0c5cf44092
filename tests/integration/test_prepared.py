"""Statements run as driver SQL (``Prepared``) store what ``Connection.execute`` stores: the
same values through the same column types, on SQLite and on PostgreSQL with both drivers (the
named-parameter driver takes the generic path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, StatementError

from provisioner.domain.status import OperationStatus, OperationType
from provisioner.errors import DatabaseUnavailableError, Problem
from provisioner.store.database import Database
from provisioner.store.models import operations
from provisioner.store.records import Prepared, insert_columns
from tests.integration import test_store

# The store tier's databases: SQLite, and PostgreSQL with each driver.
database_url = test_store.database_url
database = test_store.database

AT = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=UTC)


def operation_row(operation_id: str, **changes: Any) -> dict[str, Any]:
    """An operations row with a value of each kind of column: text, enum, JSON, timestamps."""
    return {
        "id": operation_id,
        "type": OperationType.DEPLOY,
        "deployment_unit_id": f"urn:dmb:dp:prepared:{operation_id}",
        "environment": "development",
        "version": "1.0.0",
        "status": OperationStatus.RUNNING,
        "remove_data": False,
        "requested_components": ["urn:a", "urn:b"],
        "cancel_requested": False,
        "fencing": 1,
        "warnings": (Problem("policies.p", "ünïcode"),),
        "lease_expires_at": AT + timedelta(seconds=20),
        "created_at": AT,
        "updated_at": AT,
        **changes,
    }


_COLUMNS = list(operation_row("x"))
_INSERT = Prepared(insert_columns(operations, _COLUMNS))
_RENEW = Prepared(
    update(operations)
    .where(operations.c.id == bindparam("k_id"), operations.c.fencing == bindparam("k_fence"))
    # A value the statement holds itself (coalesce's second argument) beside the parameters.
    .values(
        updated_at=bindparam("now", type_=operations.c.updated_at.type),
        error=func.coalesce(bindparam("error", type_=operations.c.error.type), "none given"),
    )
    .returning(operations.c.id)
)


async def rows(database: Database, *ids: str) -> list[dict[str, Any]]:
    async with database.read() as conn:
        found = await conn.execute(
            select(operations).where(operations.c.id.in_(ids)).order_by(operations.c.id)
        )
        return [dict(row._mapping) for row in found]


async def test_values_are_stored_as_execute_stores_them(database: Database) -> None:
    generic, prepared = operation_row("op-generic"), operation_row("op-prepared")

    def work(conn: Connection) -> None:
        conn.execute(insert(operations), [generic])
        _INSERT.execute(conn, [prepared])

    await database.transaction(work)
    stored_generic, stored_prepared = await rows(database, "op-generic", "op-prepared")
    assert stored_prepared == {
        **stored_generic,
        "id": "op-prepared",
        "deployment_unit_id": prepared["deployment_unit_id"],
    }
    assert stored_prepared["warnings"] == (Problem("policies.p", "ünïcode"),)
    assert stored_prepared["created_at"] == AT
    assert stored_prepared["status"] is OperationStatus.RUNNING


async def test_many_parameter_sets_and_returning(database: Database) -> None:
    ids = [f"op-many-{i}" for i in range(3)]
    await database.transaction(
        lambda conn: _INSERT.execute(conn, [operation_row(op_id) for op_id in ids])
    )
    later = AT + timedelta(minutes=1)

    def renew(conn: Connection) -> list[str]:
        held = _RENEW.execute(conn, [{"k_id": ids[0], "k_fence": 1, "now": later, "error": None}])
        stale = _RENEW.execute(conn, [{"k_id": ids[1], "k_fence": 2, "now": later, "error": "x"}])
        assert stale == []
        return [row[0] for row in held]

    assert await database.transaction(renew) == [ids[0]]
    first, second, _ = await rows(database, *ids)
    assert (first["updated_at"], first["error"]) == (later, "none given")
    assert (second["updated_at"], second["error"]) == (AT, None)


async def test_a_missing_parameter_is_an_error_not_a_null(database: Database) -> None:
    row = operation_row("op-missing")
    del row["environment"]
    with pytest.raises((KeyError, StatementError), match="environment"):  # named: SQLAlchemy's
        await database.transaction(lambda conn: _INSERT.execute(conn, [row]))


async def test_a_refused_row_raises_sqlalchemys_error_without_its_values(
    database: Database,
) -> None:
    """On the driver's cursor as through ``execute``: the database's refusal is SQLAlchemy's
    ``IntegrityError``, its message names no parameter value, and the transaction is rolled
    back (the first row of the batch is not stored either)."""
    await database.transaction(lambda conn: _INSERT.execute(conn, [operation_row("op-taken")]))
    fresh, taken = (operation_row(op_id, version="s3cret") for op_id in ("op-fresh", "op-taken"))

    with pytest.raises(IntegrityError) as caught:
        await database.transaction(lambda conn: _INSERT.execute(conn, [fresh, taken]))

    assert "s3cret" not in str(caught.value)
    assert "parameters hidden" in str(caught.value)
    assert [row["id"] for row in await rows(database, "op-fresh", "op-taken")] == ["op-taken"]


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-psycopg", marks=pytest.mark.postgres),
    ],
    indirect=True,
)
async def test_a_connection_lost_under_a_statement_is_replaced(
    database: Database, database_url: str
) -> None:
    """PostgreSQL ends the writer's session between two transactions (a SQLite connection is
    a file, which no server ends): the next statement fails as the database being unavailable
    (retried by the engine), the connection is invalidated, and the transaction after that
    runs on a new one."""
    db = Database(database_url, pool_size=1)
    try:
        pid = await db.transaction(
            lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        )
        async with db.read() as conn:
            await conn.execute(select(func.pg_terminate_backend(pid)))

        with pytest.raises(DatabaseUnavailableError):
            await db.transaction(lambda conn: _INSERT.execute(conn, [operation_row("op-lost")]))
        await db.transaction(lambda conn: _INSERT.execute(conn, [operation_row("op-after")]))
        assert [row["id"] for row in await rows(db, "op-after", "op-lost")] == ["op-after"]
    finally:
        await db.dispose()
