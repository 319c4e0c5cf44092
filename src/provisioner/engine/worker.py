"""A replica's engine: claims operations from the database, runs them, keeps their leases.

Every running operation has an owner (this worker), a lease renewed by heartbeat, and a fencing
token that every state write is conditional on. A replica that stops heartbeating (killed,
paused, cut off) loses its operations to whichever replica claims them after the lease; its
late writes are refused by the fence. On start, a replica takes back at once what a previous
process with the same replica id left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from provisioner.background import cancel_and_wait
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.lag import LoopLag
from provisioner.engine.ports import (
    AdapterDirectory,
    ClaimedOperation,
    EngineObserver,
    Fence,
    OperationStore,
    QuietObserver,
    TechAdapterPort,
)
from provisioner.engine.recorder import Recorder
from provisioner.engine.runner import OperationRunner
from provisioner.engine.slots import Slots
from provisioner.errors import DatabaseUnavailableError, LeaseLostError

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and runs operations."""

    replica_id: str
    max_running_operations: int = 32
    max_concurrency: int = 64
    lease_seconds: float = 20.0
    claim_interval_seconds: float = 1.0
    control_interval_seconds: float = 0.5
    operation_timeout_seconds: float | None = None
    # Backpressure: past this much event-loop lag the replica is short of CPU, and takes no
    # more than ``min_running_operations``. Measured (bench/load.py: 3 replicas, 2 cores):
    # without it the p99 of status reads was ~250 ms; with 5 ms and 2, ~100-140 ms, at ~260
    # components per second instead of ~320.
    max_loop_lag_seconds: float = 0.005
    min_running_operations: int = 2
    failpoints: Failpoints = field(default_factory=Failpoints)
    # Each deploy's components are validated by their adapters before anything is provisioned.
    validate_before_deploy: bool = True
    # Every adapter is sent every component's privateInfo (not only its own and its
    # dependencies').
    share_private_info: bool = False

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease_seconds / 3


@dataclass(slots=True)
class _Run:
    runner: OperationRunner
    fence: Fence
    task: asyncio.Task[None]


class Worker:
    """Claims, runs and heartbeats operations for one replica."""

    def __init__(
        self,
        *,
        store: OperationStore,
        adapters: TechAdapterPort,
        directory: AdapterDirectory,
        config: WorkerConfig,
        clock: Callable[[], datetime] = utc_now,
        on_finished: Callable[[], None] | None = None,
        observer: EngineObserver | None = None,
    ) -> None:
        """``on_finished`` is called whenever an operation run ends (its end may have
        published a Market Plane event)."""
        self._store = store
        self._observer = observer or QuietObserver()
        self._adapters = adapters
        self._directory = directory
        self._config = config
        self._clock = clock
        self.owner = f"{config.replica_id}/{uuid.uuid4().hex[:12]}"
        self._recorder = Recorder(
            store, lease_seconds=config.lease_seconds, observer=self._observer
        )
        self._slots = Slots(config.max_concurrency)
        self._runs: dict[str, _Run] = {}
        self._lag = LoopLag()
        self._wake = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None
        self._controlling: asyncio.Task[None] | None = None
        self._accepting = False
        self._on_finished = on_finished

    def start(self) -> None:
        """Start claiming and heartbeating (call from within the running event loop)."""
        self._accepting = True
        self._lag.start()
        self._recorder.start()
        self._claiming = asyncio.create_task(self._claim_loop(), name="claim-loop")
        self._controlling = asyncio.create_task(self._control_loop(), name="control-loop")

    def wake(self) -> None:
        """An operation was submitted: claim now rather than at the next interval."""
        self._wake.set()

    @property
    def running(self) -> int:
        """Operations this replica runs now."""
        return len(self._runs)

    def slot_usage(self) -> dict[str, tuple[int, int]]:
        """Per adapter (``AdapterEndpoint.key``): calls in flight and calls waiting for a slot."""
        return self._slots.usage()

    def cancel(self, operation_id: str) -> bool:
        """Cancel an operation if this worker runs it; return whether it does."""
        run = self._runs.get(operation_id)
        if run is None:
            return False
        run.runner.cancel()
        return True

    async def stop(self, *, grace_seconds: float) -> None:
        """Stop claiming; let running operations finish within the grace period, then hand
        back (release the lease of) whatever is still running."""
        self._accepting = False
        await cancel_and_wait(self._claiming)
        pending = [run.task for run in self._runs.values()]
        if pending and grace_seconds > 0:
            await asyncio.wait(pending, timeout=grace_seconds)
        handed_back = [run.fence for run in self._runs.values()]
        for run in list(self._runs.values()):
            run.task.cancel()
        await asyncio.gather(
            *(run.task for run in list(self._runs.values())), return_exceptions=True
        )
        await self._recorder.close(drain_seconds=max(grace_seconds, 1.0))
        await cancel_and_wait(self._controlling)
        await self._lag.stop()
        if handed_back:
            with contextlib.suppress(DatabaseUnavailableError):
                await self._store.release_leases(handed_back)
            log.info("operations_handed_back", count=len(handed_back))

    # --- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while self._accepting:
            self._wake.clear()
            capacity = self._capacity()
            claimed: list[ClaimedOperation] = []
            if capacity > 0:
                claimed = await self._claim(capacity)
                for operation in claimed:
                    self._launch(operation)
            if claimed and len(claimed) == capacity:
                await asyncio.sleep(0)  # let the new work show in the loop's lag first
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.claim_interval_seconds):
                    await self._wake.wait()

    def _capacity(self) -> int:
        """How many more operations to take now.

        Up to ``max_running_operations``, while the event loop keeps up. When it runs late the
        replica is short of CPU: more work would slow every request it serves, status reads
        included, so it takes no more than the floor and leaves the rest to other replicas.
        """
        limit = self._config.max_running_operations
        if self._lag.seconds > self._config.max_loop_lag_seconds:
            limit = min(limit, self._config.min_running_operations)
        # A few at a time, so that the lag of the work just taken is seen before taking more.
        return min(limit - len(self._runs), self._config.min_running_operations)

    async def _claim(self, capacity: int) -> list[ClaimedOperation]:
        try:
            return await self._store.claim(
                owner=self.owner,
                replica_id=self._config.replica_id,
                limit=capacity,
                lease_seconds=self._config.lease_seconds,
                now=self._clock(),
                running=list(self._runs),
            )
        except DatabaseUnavailableError as exc:
            log.warning("claim_failed", error=str(exc))
        except Exception:
            log.exception("claim_crashed")
        return []

    def _launch(self, claimed: ClaimedOperation) -> None:
        runner = OperationRunner(
            claimed,
            adapters=self._adapters,
            directory=self._directory,
            recorder=self._recorder,
            slots=self._slots,
            clock=self._clock,
            operation_timeout_seconds=self._config.operation_timeout_seconds,
            failpoints=self._config.failpoints,
            validate_before_deploy=self._config.validate_before_deploy,
            share_private_info=self._config.share_private_info,
            observer=self._observer,
        )
        operation_id = claimed.header.id
        # Every claim increments the fence: past the first, someone owned it before.
        self._observer.operation_started(claimed.header, resumed=claimed.fence.token > 1)
        task = asyncio.create_task(self._run(runner), name=f"operation-{operation_id}")
        self._runs[operation_id] = _Run(runner, claimed.fence, task)
        runner.log.info("operation_claimed", fence=claimed.fence.token)

    async def _run(self, runner: OperationRunner) -> None:
        try:
            await runner.run()
        except (LeaseLostError, asyncio.CancelledError):
            pass
        except Exception as exc:
            runner.log.exception("operation_crashed")
            with contextlib.suppress(Exception):
                await runner.record_crash(exc)
        finally:
            self._runs.pop(runner.operation_id, None)
            self._wake.set()
            if self._on_finished is not None:
                self._on_finished()

    # --- leases and cancel requests ---------------------------------------------------------

    async def _control_loop(self) -> None:
        """Renew leases every heartbeat; look for cancel requests more often than that."""
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + self._config.heartbeat_seconds
        while True:
            await asyncio.sleep(self._config.control_interval_seconds)
            if not self._runs:
                next_heartbeat = loop.time() + self._config.heartbeat_seconds
                continue
            renew = loop.time() >= next_heartbeat
            try:
                await self._control(renew=renew)
            except DatabaseUnavailableError as exc:
                log.warning("heartbeat_failed", error=str(exc))
                continue
            except Exception:
                log.exception("heartbeat_crashed")
                continue
            if renew:
                next_heartbeat = loop.time() + self._config.heartbeat_seconds

    async def _control(self, *, renew: bool) -> None:
        fences = [run.fence for run in self._runs.values()]
        lost, cancels = await self._store.renew_leases(
            fences,
            lease_seconds=self._config.lease_seconds if renew else None,
            now=self._clock(),
        )
        if lost:
            self._observer.fenced_writes_refused(len(lost))
        for operation_id in lost:
            run = self._runs.get(operation_id)
            if run is not None:
                run.runner.log.warning("lease_lost")
                run.task.cancel()
        for operation_id in cancels:
            self.cancel(operation_id)
