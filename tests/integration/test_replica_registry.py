"""Replica ids held by heartbeat, on SQLite and PostgreSQL: a live holder keeps its id, a
dead one on this host or a silent one anywhere gives it up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from provisioner.engine.identity import ReplicaIdentity
from provisioner.errors import ReplicaIdInUseError
from provisioner.store.database import Database
from provisioner.store.migrate import migrate
from provisioner.store.replicas import SqlReplicas

LEASE = 20.0


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await migrate(db)
    yield db
    await db.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def identity(database: Database, clock: Clock, *, host: str, pid: int) -> ReplicaIdentity:
    return ReplicaIdentity(
        SqlReplicas(database), "replica-a", lease_seconds=LEASE, clock=clock, host=host, pid=pid
    )


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_an_id_held_by_a_live_process_is_refused_in_one_line(database: Database) -> None:
    clock = Clock()
    await identity(database, clock, host="h", pid=os.getpid()).acquire()
    with pytest.raises(ReplicaIdInUseError) as refused:
        await identity(database, clock, host="h", pid=os.getppid()).acquire()
    message = refused.value.message
    assert "'replica-a' is in use by a live process" in message
    assert f"pid {os.getpid()} on h" in message
    assert "\n" not in message


async def test_a_dead_process_on_this_host_gives_its_id_back_at_once(database: Database) -> None:
    clock = Clock()
    await identity(database, clock, host="h", pid=dead_pid()).acquire()
    await identity(database, clock, host="h", pid=os.getpid()).acquire()  # no wait


async def test_a_holder_on_another_host_keeps_the_id_until_its_heartbeat_is_stale(
    database: Database,
) -> None:
    clock = Clock()
    await identity(database, clock, host="other", pid=dead_pid()).acquire()
    mine = identity(database, clock, host="h", pid=os.getpid())
    with pytest.raises(ReplicaIdInUseError):
        await mine.acquire()  # its pid means nothing here: another host
    clock.now += timedelta(seconds=LEASE + 1)
    await mine.acquire()


async def test_heartbeats_keep_the_id_and_shutdown_lets_it_go(database: Database) -> None:
    clock = Clock()
    registry = SqlReplicas(database)
    first = identity(database, clock, host="other", pid=1234)
    await first.acquire()
    clock.now += timedelta(seconds=LEASE - 1)
    assert await registry.heartbeat(first._hold, now=clock.now)
    clock.now += timedelta(seconds=LEASE - 1)
    second = identity(database, clock, host="h", pid=os.getpid())
    with pytest.raises(ReplicaIdInUseError):
        await second.acquire()  # the heartbeat kept it fresh
    await first.stop()
    await second.acquire()
    assert not await registry.heartbeat(first._hold, now=clock.now)  # taken: it is told so
