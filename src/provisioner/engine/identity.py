"""A replica's hold on its id: taken at start, renewed by heartbeat, let go at shutdown.

A process takes the running operations of its own replica id for a dead predecessor's and
resumes them at once (``OperationStore.claim``). That is right only if no other live process
has the id: a default id is unique per process (host name, pid, random part), and a process
started with an explicit id refuses to start while another process heartbeats under it.

Whether the holder is alive: its heartbeat is fresh (younger than a lease), unless it ran on
this host and its process is gone (or has our own pid: a restarted container's pid 1), which
lets a process restarted after a crash take its id back without waiting out the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from provisioner.background import cancel_and_wait
from provisioner.engine.ports import ReplicaHold, ReplicaRegistry
from provisioner.errors import DatabaseUnavailableError, ReplicaIdInUseError

log = structlog.get_logger(__name__)


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


class ReplicaIdentity:
    """This process's hold on ``replica_id``."""

    def __init__(
        self,
        registry: ReplicaRegistry,
        replica_id: str,
        *,
        lease_seconds: float,
        clock: Callable[[], datetime],
        host: str | None = None,
        pid: int | None = None,
        exists: Callable[[int], bool] = process_exists,
    ) -> None:
        self._registry = registry
        self._lease = timedelta(seconds=lease_seconds)
        self._heartbeat_seconds = lease_seconds / 3
        self._clock = clock
        self._exists = exists
        now = clock()
        self._hold = ReplicaHold(
            replica_id, host or socket.gethostname(), pid or os.getpid(), now, now
        )
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Hold the id, or raise ``ReplicaIdInUseError`` (one line) if a live process does."""
        now = self._clock()
        holder = await self._registry.register(
            self._hold, stale_before=now - self._lease, may_replace=self._is_gone
        )
        if holder is not None:
            age = (now - holder.heartbeat_at).total_seconds()
            raise ReplicaIdInUseError(
                f"replica id {holder.replica_id!r} is in use by a live process (pid "
                f"{holder.pid} on {holder.host}, last heartbeat {age:.1f} s ago): give each "
                "process its own PROVISIONER_REPLICA_ID, or leave it unset for a unique one"
            )
        log.info("replica_id_held", replica_id=self._hold.replica_id)

    def _is_gone(self, holder: ReplicaHold) -> bool:
        """Whether a holder with a fresh heartbeat is nevertheless no live process."""
        if holder.host != self._hold.host:
            return False
        return holder.pid == self._hold.pid or not self._exists(holder.pid)

    def start(self) -> None:
        """Heartbeat every third of a lease (call from within the running event loop)."""
        self._task = asyncio.create_task(self._beat(), name="replica-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                held = await self._registry.heartbeat(self._hold, now=self._clock())
            except DatabaseUnavailableError as exc:
                log.warning("replica_heartbeat_failed", error=str(exc))
                continue
            except Exception:
                log.exception("replica_heartbeat_crashed")
                continue
            if not held:
                # We were paused past a lease and another process took the id: fencing keeps
                # the operations safe, but the two will keep taking work from each other.
                log.error("replica_id_taken", replica_id=self._hold.replica_id)

    async def stop(self) -> None:
        """Stop heartbeating and let go of the id."""
        await cancel_and_wait(self._task)
        with contextlib.suppress(DatabaseUnavailableError):
            await self._registry.deregister(self._hold)
