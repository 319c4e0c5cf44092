"""A replica's delivery loop: sends the outbox's release events to the Market Planes.

It claims due deliveries (each with a lease, in order per release and Market Plane), builds each
event from what was fixed when it was published, sends it, and records the outcome: an
acknowledged event is done; a failed attempt is retried with capped exponential backoff and
jitter, for as long as it takes. Delivery is at least once: a replica that dies after sending
and before recording leaves the claim to lapse, and the event is sent again. Events published
longer ago than the publication timeout and still not acknowledged make their release CORRUPT
until they are. Each replica runs one loop; a local operation's end wakes it at once, other
replicas' events are found every claim interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from provisioner.domain.publication import (
    PublicationEvent,
    acl_updated_event,
    deployed_event,
    encode_event,
    undeployed_event,
)
from provisioner.engine.failpoints import Failpoints
from provisioner.engine.ports import (
    Delivery,
    DeliveryOutcome,
    EngineObserver,
    MarketplaceEndpoint,
    MarketplacePort,
    PublicationRecord,
    PublicationStore,
    QuietObserver,
)
from provisioner.errors import DatabaseUnavailableError
from provisioner.offload import offload

log = structlog.get_logger(__name__)
_CACHED_BODIES = 16  # events kept encoded: one per release being delivered, in practice


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    """How a replica delivers events (the ``publication_*`` settings)."""

    replica_id: str
    publication_timeout_seconds: float = 600.0
    publication_request_timeout_seconds: float = 10.0
    publication_retry_initial_seconds: float = 1.0
    publication_retry_max_seconds: float = 60.0
    claim_interval_seconds: float = 1.0
    max_deliveries: int = 8  # in flight at once, per replica
    failpoints: Failpoints = field(default_factory=Failpoints)

    @property
    def claim_lease_seconds(self) -> float:
        """Long enough for one attempt to be sent and recorded."""
        return self.publication_request_timeout_seconds * 2 + 5.0


@dataclass(frozen=True, slots=True)
class _Body:
    event: str
    event_id: str
    content: bytes


def retry_delay(attempts: int, *, initial: float, maximum: float, jitter: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from
    ``initial``, capped at ``maximum``, then spread by ``jitter`` (0 to 1) over its upper half,
    so that the events of many releases failing together are not retried together."""
    ceiling = min(maximum, initial * 2.0 ** min(max(attempts - 1, 0), 62))
    return ceiling / 2 + ceiling / 2 * jitter


def build_body(record: PublicationRecord) -> bytes:
    """The event's body, from what was fixed when it was published."""
    if record.event is PublicationEvent.DEPLOYED:
        if record.document is None:
            raise LookupError(f"the descriptor of operation {record.operation_id} is gone")
        event = deployed_event(record, record.document, record.public_info)
    elif record.event is PublicationEvent.UNDEPLOYED:
        event = undeployed_event(record, record.components, whole_unit=record.whole_unit)
    else:
        detail = record.detail or {}
        event = acl_updated_event(record, str(detail.get("componentId")), detail.get("refs", []))
    return encode_event(event)


class Publisher:
    """Claims, sends and records deliveries for one replica."""

    def __init__(
        self,
        *,
        store: PublicationStore,
        marketplaces: MarketplacePort,
        endpoints: Sequence[MarketplaceEndpoint],
        config: PublisherConfig,
        observer: EngineObserver | None = None,
        clock: Callable[[], datetime] = _utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._marketplaces = marketplaces
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}
        self._config = config
        self._observer = observer or QuietObserver()
        self._clock = clock
        self._jitter = jitter
        self.owner = f"{config.replica_id}/{uuid.uuid4().hex[:12]}"
        self._bodies: OrderedDict[int, _Body] = OrderedDict()
        self._sending: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._retries: list[float] = []  # a heap of the event-loop times retries fall due
        self._swept_at = float("-inf")

    def start(self) -> None:
        """Start delivering (call from within the running event loop)."""
        self._loop = asyncio.create_task(self._run(), name="publisher")

    def wake(self) -> None:
        """An event may have been published: look now rather than at the next interval."""
        self._wake.set()

    async def stop(self, *, grace_seconds: float) -> None:
        """Stop claiming; let the attempts in flight finish within the grace period, then hand
        back what is left so that another replica delivers it at once."""
        if self._loop is None:
            return
        self._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop
        self._loop = None
        if self._sending and grace_seconds > 0:
            await asyncio.wait(self._sending, timeout=grace_seconds)
        for task in self._sending:
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        with contextlib.suppress(DatabaseUnavailableError):
            await self._store.release_claims(self.owner)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            looked_at = loop.time()
            try:
                if looked_at - self._swept_at >= self._config.claim_interval_seconds:
                    self._swept_at = looked_at  # once per interval, not after every delivery
                    await self._sweep()
                await self._claim()
            except DatabaseUnavailableError as exc:
                log.warning("publication_claim_failed", error=str(exc))
            except Exception:
                log.exception("publication_loop_crashed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._until_next_look(looked_at, loop.time())):
                    await self._wake.wait()

    def _until_next_look(self, looked_at: float, now: float) -> float:
        """The claim interval, or less when a retry falls due sooner (those due by the time
        the last look began were looked for)."""
        while self._retries and self._retries[0] <= looked_at:
            heapq.heappop(self._retries)
        if not self._retries:
            return self._config.claim_interval_seconds
        return max(0.0, min(self._config.claim_interval_seconds, self._retries[0] - now))

    async def _sweep(self) -> None:
        now = self._clock()
        cutoff = now - timedelta(seconds=self._config.publication_timeout_seconds)
        overdue = await self._store.mark_overdue(cutoff=cutoff, now=now)
        if overdue:
            log.warning("publications_overdue", deliveries=overdue)

    async def _claim(self) -> None:
        capacity = self._config.max_deliveries - len(self._sending)
        names = list(self._endpoints)
        if capacity <= 0:
            return
        due = await self._store.due(
            owner=self.owner,
            replica_id=self._config.replica_id,
            marketplaces=names,
            now=self._clock(),
        )
        if not due:
            return
        claimed = await self._store.claim_deliveries(
            owner=self.owner,
            replica_id=self._config.replica_id,
            marketplaces=names,
            limit=capacity,
            lease_seconds=self._config.claim_lease_seconds,
            now=self._clock(),
        )
        for delivery in claimed:
            task = asyncio.create_task(self._send(delivery), name="delivery")
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._wake.set()  # the next event of that release may be claimable now

    # --- one delivery -----------------------------------------------------------------------

    async def _send(self, delivery: Delivery) -> None:
        bound = log.bind(
            deployment_unit_id=delivery.deployment_unit_id,
            environment=delivery.environment,
            marketplace=delivery.marketplace,
            publication_id=delivery.publication_id,
            attempt=delivery.attempts,
        )
        try:
            outcome = await self._attempt(delivery)
            if outcome is None:
                return
            await self._record(delivery, outcome, bound)
        except DatabaseUnavailableError as exc:
            # The claim lapses and the event is sent again: at least once.
            bound.warning("delivery_not_recorded", error=str(exc))
        except Exception:
            bound.exception("delivery_crashed")

    async def _attempt(self, delivery: Delivery) -> DeliveryOutcome | None:
        """Build and send the event; None if there is nothing to send any more."""
        endpoint = self._endpoints[delivery.marketplace]
        try:
            body = await self._body(delivery.publication_id)
        except DatabaseUnavailableError:
            raise
        except Exception as exc:  # stored data this version cannot build an event from
            return DeliveryOutcome(
                False, error=f"cannot build the event: {type(exc).__name__}", failure="protocol"
            )
        if body is None:
            return None
        self._config.failpoints.check("before-delivery", delivery.deployment_unit_id)
        return await self._marketplaces.deliver(
            endpoint, body.content, event_id=body.event_id, event=body.event
        )

    async def _body(self, publication_id: int) -> _Body | None:
        """The event's body, built once for all its Market Planes and attempts (it is the
        same bytes each time); None if the publication is no longer stored."""
        body = self._bodies.get(publication_id)
        if body is None:
            record = await self._store.publication(publication_id)
            if record is None:
                return None
            content = await offload(record.size, build_body, record)
            body = self._bodies[publication_id] = _Body(
                record.event.value, record.event_id, content
            )
            while len(self._bodies) > _CACHED_BODIES:
                self._bodies.popitem(last=False)
        self._bodies.move_to_end(publication_id)
        return body

    async def _record(self, delivery: Delivery, outcome: DeliveryOutcome, bound: Any) -> None:
        now = self._clock()
        delay = retry_delay(
            delivery.attempts,
            initial=self._config.publication_retry_initial_seconds,
            maximum=self._config.publication_retry_max_seconds,
            jitter=self._jitter(),
        )
        recorded = await self._store.record_delivery(
            delivery,
            owner=self.owner,
            outcome=outcome,
            now=now,
            retry_at=now + timedelta(seconds=delay),
        )
        if not recorded:
            bound.warning("delivery_claim_lost")
        elif outcome.acknowledged:
            self._observer.publication_delivered()
            bound.info("event_delivered", status_code=outcome.status_code)
        else:
            self._observer.publication_failed(outcome.failure or "protocol")
            bound.warning(
                "delivery_failed",
                status_code=outcome.status_code,
                error=outcome.error,
                retry_in=round(delay, 3),
            )
            # A little after it is due by the store's clock, so that the claim finds it.
            heapq.heappush(self._retries, asyncio.get_running_loop().time() + delay + 0.01)
            self._wake.set()  # the loop's next wait ends when it is due
