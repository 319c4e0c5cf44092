"""Schema migrations (alembic), applied by ``provisioner migrate`` and at service start.

On PostgreSQL the upgrade runs under a transaction-scoped advisory lock, so replicas that start
together migrate one after the other and the later ones find nothing to do.
"""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from provisioner.errors import ConfigurationError
from provisioner.resources import bundled
from provisioner.store.database import Database

# pg_advisory_lock key: the ASCII of "prov"; any constant private to provisioner works.
MIGRATION_LOCK_KEY = 0x70726F76


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(bundled("migrations", "env.py")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The revision a fully migrated database is at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise ConfigurationError("no migration found")
    return head


async def migrate(database: Database) -> None:
    """Bring the schema to the latest revision, in one transaction."""
    await database.transaction(_upgrade)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: replicas starting together migrate one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    command.upgrade(alembic_config(connection), "head")


async def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    async with database.read() as connection:
        try:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:
            return None
        return result.scalar_one_or_none()
