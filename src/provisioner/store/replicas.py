"""Replica heartbeats in SQL: which process holds each replica id (``ReplicaRegistry``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from provisioner.engine.ports import ReplicaHold
from provisioner.store.database import Database
from provisioner.store.models import replicas
from provisioner.store.records import field_names, record, values

_FIELDS = field_names(ReplicaHold)
# Two processes registering one new id at the same instant: the loser reads the winner's row.
REGISTER_ATTEMPTS = 2


def _mine(hold: ReplicaHold) -> tuple[ColumnElement[bool], ...]:
    return (
        replicas.c.replica_id == hold.replica_id,
        replicas.c.host == hold.host,
        replicas.c.pid == hold.pid,
    )


class SqlReplicas:
    """``ReplicaRegistry`` on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def register(
        self,
        hold: ReplicaHold,
        *,
        stale_before: datetime,
        may_replace: Callable[[ReplicaHold], bool],
    ) -> ReplicaHold | None:
        def work(conn: Connection) -> ReplicaHold | None:
            # Rows of processes that stopped heartbeating are dead: cleared by whoever starts.
            conn.execute(delete(replicas).where(replicas.c.heartbeat_at < stale_before))
            query = select(replicas).where(replicas.c.replica_id == hold.replica_id)
            if not self._db.is_sqlite:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(insert(replicas).values(**values(hold, _FIELDS)))
                return None
            holder = record(ReplicaHold, row)
            if not may_replace(holder):
                return holder
            conn.execute(
                update(replicas)
                .where(replicas.c.replica_id == hold.replica_id)
                .values(**values(hold, _FIELDS))
            )
            return None

        for attempt in range(1, REGISTER_ATTEMPTS + 1):
            try:
                return await self._db.transaction(work)
            except IntegrityError:
                if attempt == REGISTER_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def heartbeat(self, hold: ReplicaHold, *, now: datetime) -> bool:
        def work(conn: Connection) -> bool:
            renewed = conn.execute(
                update(replicas).where(*_mine(hold)).values(heartbeat_at=now)
            ).rowcount
            if renewed:
                return True
            taken = conn.execute(
                select(replicas.c.replica_id).where(replicas.c.replica_id == hold.replica_id)
            ).first()
            if taken is not None:
                return False
            # Cleared as stale while this process was paused: hold it again.
            conn.execute(insert(replicas).values(values(hold, _FIELDS) | {"heartbeat_at": now}))
            return True

        return await self._db.transaction(work)

    async def deregister(self, hold: ReplicaHold) -> None:
        await self._db.transaction(lambda conn: conn.execute(delete(replicas).where(*_mine(hold))))
