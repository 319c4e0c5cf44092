"""Group commit of state changes: every change durable before the engine acts on it.

Runners hand their state writes to one writer task. While a transaction is being committed,
new writes queue up and go together into the next one, so a burst of task completions costs one
commit instead of one each, and a quiet chain of tasks still commits each change at once. No
transaction ever spans an adapter call. When the database is unreachable the writer keeps the
batch and retries with capped backoff; a write whose fence failed raises ``LeaseLostError`` in
the runner that submitted it. A write the database refuses fails alone: the batch is applied
again one write at a time, so one operation's bad data never fails its neighbours.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from provisioner.background import cancel_and_wait
from provisioner.engine.ports import EngineObserver, OperationStore, QuietObserver, StateWrite
from provisioner.errors import DatabaseUnavailableError, LeaseLostError

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Pending:
    write: StateWrite
    done: asyncio.Future[None]


class Recorder:
    """Applies ``StateWrite``s in submission order, batching those that arrive together."""

    def __init__(
        self,
        store: OperationStore,
        *,
        lease_seconds: float,
        max_batch: int = 512,
        max_backoff_seconds: float = 2.0,
        observer: EngineObserver | None = None,
    ) -> None:
        self._store = store
        self._observer = observer or QuietObserver()
        self._lease_seconds = lease_seconds
        self._max_batch = max_batch
        self._max_backoff = max_backoff_seconds
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def close(self, *, drain_seconds: float | None = None) -> None:
        """Stop the writer once everything queued so far is written (or has failed).

        With ``drain_seconds`` (shutdown while the database is away), what is still queued then is
        dropped: the operations keep their lease until it lapses and are resumed from the
        database, by this replica's next process or by another.
        """
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        except TimeoutError:
            log.warning("writes_abandoned", queued=self._queue.qsize())
        await cancel_and_wait(self._task)
        self._task = None

    async def write(self, write: StateWrite) -> None:
        """Make ``write`` durable; raise ``LeaseLostError`` if its fence no longer holds.

        The caller's cancellation does not withdraw a queued write: a status change that was
        decided is recorded (the shield keeps it from being lost half-way).
        """
        await asyncio.shield(self.submit(write))

    def submit(self, write: StateWrite) -> asyncio.Future[None]:
        """Queue ``write`` now; the future is done once it is durable (``write``'s outcome).
        Await it through ``asyncio.shield``: cancelling it would not withdraw the write."""
        pending = _Pending(write, asyncio.get_running_loop().create_future())
        pending.done.add_done_callback(_retrieve)
        self._queue.put_nowait(pending)
        return pending.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        backoff = 0.05
        while True:
            try:
                failed = await self._store.apply(
                    [pending.write for pending in batch], lease_seconds=self._lease_seconds
                )
            except DatabaseUnavailableError as exc:
                log.warning("database_unavailable", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            except Exception as exc:  # refused by the database: find whose write it is
                if len(batch) > 1:
                    for pending in batch:
                        await self._commit([pending])
                    return
                # The type only: a database's message may quote the refused row (PostgreSQL's
                # "Failing row contains (...)"), adapters' privateInfo with it.
                log.error(
                    "state_write_failed",
                    operation_id=batch[0].write.fence.operation_id,
                    error_type=type(exc).__name__,
                )
                if not batch[0].done.done():
                    batch[0].done.set_exception(exc)
                return
            break
        if failed:
            self._observer.fenced_writes_refused(
                sum(pending.write.fence.operation_id in failed for pending in batch)
            )
        for pending in batch:
            if pending.done.done():
                continue
            if pending.write.fence.operation_id in failed:
                pending.done.set_exception(
                    LeaseLostError(f"operation {pending.write.fence.operation_id} has a new owner")
                )
            else:
                pending.done.set_result(None)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark the outcome as seen even when the writer was cancelled and never looks."""
    if not future.cancelled():
        future.exception()
