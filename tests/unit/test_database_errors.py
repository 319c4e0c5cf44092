"""Which database errors mean "unavailable, retry later"."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from provisioner.errors import DatabaseUnavailableError
from provisioner.store.database import _translated


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["57P03", "57P01", "08006", "08001"])
def test_postgres_going_away_or_starting_up_is_unavailability(sqlstate: str) -> None:
    """ "the database system is starting up" (57P03) and connection failures (08xxx) are
    retried by the engine instead of failing the operation."""
    with pytest.raises(DatabaseUnavailableError), _translated():
        raise DBAPIError("SELECT 1", None, DriverError(sqlstate))


def test_connection_level_errors_are_unavailability() -> None:
    with pytest.raises(DatabaseUnavailableError), _translated():
        raise OperationalError("SELECT 1", None, Exception("connection refused"))
    with pytest.raises(DatabaseUnavailableError), _translated():
        raise ConnectionRefusedError(111, "refused")


def test_other_database_errors_are_not_retried() -> None:
    """A constraint violation is an answer, not an outage."""
    with pytest.raises(IntegrityError), _translated():
        raise IntegrityError("INSERT", None, DriverError("23505"))
