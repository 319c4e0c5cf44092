"""What the mock adapter remembers: the call log, what it believes is deployed, open operations.

All of it lives on one event loop and is changed without awaiting in between, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from provisioner.mockadapter.answers import Answer
from provisioner.mockadapter.behaviour import Action, MockBehaviour


class CallAction(StrEnum):
    """The kind of a logged call."""

    PROVISION = "provision"
    UNPROVISION = "unprovision"
    STATUS = "status"
    VALIDATE = "validate"
    VALIDATE_STATUS = "validate-status"
    UPDATEACL = "updateacl"
    REVERSE_PROVISIONING = "reverse-provisioning"


@dataclass(slots=True)
class CallRecord:
    """One call to the Tech Adapter API, filled in as the call is served."""

    seq: int
    action: CallAction
    received_at: float
    component_id: str | None = None
    descriptor_kind: str | None = None
    remove_data: bool | None = None
    token: str | None = None
    http_status: int | None = None
    answered_at: float | None = None
    # The caller's correlation headers, as a real adapter would log them.
    request_id: str | None = None
    traceparent: str | None = None
    # Provision, unprovision and validate: the `info` each id in the target's dependsOn carried
    # in dataProduct.components (None when it carried none or is not listed).
    dependency_info: Any = None

    def to_json(self) -> dict[str, Any]:
        """The record as the control API shows it."""
        return {
            "seq": self.seq,
            "action": self.action.value,
            "componentId": self.component_id,
            "descriptorKind": self.descriptor_kind,
            "removeData": self.remove_data,
            "token": self.token,
            "httpStatus": self.http_status,
            "receivedAt": self.received_at,
            "answeredAt": self.answered_at,
            "requestId": self.request_id,
            "traceparent": self.traceparent,
            "dependencyInfo": self.dependency_info,
        }


class CallLog:
    """Calls in the order received, and how many operations were in progress at most."""

    def __init__(self) -> None:
        self._records: list[CallRecord] = []
        # Sequence numbers keep counting across clear(): a number is never given out twice.
        self._next_seq = 1
        self.in_flight = 0
        self.max_in_flight = 0

    def open(self, action: CallAction) -> CallRecord:
        """Log a call as received."""
        record = CallRecord(seq=self._next_seq, action=action, received_at=time.time())
        self._next_seq += 1
        self._records.append(record)
        return record

    @staticmethod
    def close(record: CallRecord, http_status: int) -> None:
        """Log the answer to a call."""
        record.http_status = http_status
        record.answered_at = time.time()

    def operation_started(self) -> None:
        """A provision or unprovision is now in progress."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def operation_ended(self) -> None:
        """A provision or unprovision is no longer in progress."""
        self.in_flight -= 1

    def to_json(self, action: str | None = None, component_id: str | None = None) -> dict[str, Any]:
        """The log as the control API shows it, optionally only calls of one action or component."""
        records = [
            r
            for r in self._records
            if action in (None, r.action) and component_id in (None, r.component_id)
        ]
        return {"calls": [r.to_json() for r in records], "maxInFlight": self.max_in_flight}

    def clear(self) -> None:
        """Forget the logged calls; the maximum restarts from what is in progress now."""
        self._records.clear()
        self.max_in_flight = self.in_flight


# How many provision/unprovision requests each component remembers having received.
RECEIVED_KEPT = 16


@dataclass(slots=True)
class ComponentRecord:
    """What the mock believes about one component, and what it was last sent."""

    provisioned: bool = False
    provision_count: int = 0
    unprovision_count: int = 0
    last_remove_data: bool | None = None
    validate_count: int = 0
    # The refs and the parsed provisionInfo.result of the last updateacl, whatever its answer.
    acl_refs: list[str] = field(default_factory=list)
    acl_result: object = None
    transient_answered: dict[Action, int] = field(default_factory=dict)
    received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECEIVED_KEPT))

    def receive(self, seq: int, action: Action, dependency_info: object) -> None:
        """Remember what a provision or unprovision request carried about the dependencies."""
        self.received.append(
            {"seq": seq, "action": action.value, "dependencyInfo": dependency_info}
        )

    def take_transient_error(self, action: Action, limit: int) -> bool:
        """Whether this POST of the action is one of the first `limit`, to be answered 503."""
        answered = self.transient_answered.get(action, 0)
        if answered >= limit:
            return False
        self.transient_answered[action] = answered + 1
        return True

    def record_success(self, action: Action, *, remove_data: bool) -> None:
        """An operation on the component completed successfully."""
        if action is Action.PROVISION:
            self.provisioned = True
            self.provision_count += 1
        else:
            self.provisioned = False
            self.unprovision_count += 1
            self.last_remove_data = remove_data

    def to_json(self) -> dict[str, Any]:
        """The record as the control API shows it."""
        return {
            "provisioned": self.provisioned,
            "provisionCount": self.provision_count,
            "unprovisionCount": self.unprovision_count,
            "lastRemoveData": self.last_remove_data,
            "validateCount": self.validate_count,
            "aclRefs": list(self.acl_refs),
            "aclResult": self.acl_result,
        }


class ComponentBook:
    """The components the mock has been asked about, by id (None: an unidentifiable one)."""

    def __init__(self) -> None:
        self._records: dict[str | None, ComponentRecord] = {}

    def get(self, component_id: str | None) -> ComponentRecord:
        """The record of a component, created empty on first use."""
        record = self._records.get(component_id)
        if record is None:
            record = self._records[component_id] = ComponentRecord()
        return record

    def find(self, component_id: str) -> ComponentRecord | None:
        """The record of a component, None if the mock never heard of it."""
        return self._records.get(component_id)

    def to_json(self) -> dict[str, Any]:
        """The records as the control API shows them (None becomes the key "null")."""
        return {
            "null" if key is None else key: record.to_json()
            for key, record in self._records.items()
        }


@dataclass(slots=True)
class Operation:
    """An async provision or unprovision, from its 202 to its final status answer."""

    action: Action
    component_id: str
    descriptor_kind: str
    remove_data: bool
    behaviour: MockBehaviour
    started_at: float
    running_answers: int = 0
    poll_errors_answered: int = 0
    final: Answer | None = None


@dataclass(slots=True)
class ValidationJob:
    """An async (v2) validation: its final answer is known at once, handed out once due."""

    component_id: str | None
    descriptor_kind: str | None
    final: Answer
    polls: int = 0
    latency_ms: float = 0.0
    started_at: float = 0.0
    running_answers: int = 0


@dataclass(slots=True)
class AclJob:
    """An async updateacl, from its 202 to its final status answer."""

    component_id: str
    descriptor_kind: str
    final: Answer
    polls: int
    running_answers: int = 0


class Gates:
    """Named gates that hold operations until a test opens them (`specific.mock.gate`).

    A test that must act while an adapter call is in progress (kill or pause the caller, stop
    its database, submit a second request) cannot rely on a latency being long enough: on a
    loaded machine any latency can run out first. A gate holds the operation for as long as
    the test needs. Closed until opened, a gate stays open: what reaches it later passes.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: Counter[str] = Counter()

    def _event(self, name: str) -> asyncio.Event:
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = asyncio.Event()
        return event

    def is_open(self, name: str) -> bool:
        """Whether the gate has been opened."""
        return self._event(name).is_set()

    async def wait(self, name: str) -> None:
        """Return once the gate is open (at once if it already is)."""
        self._waiting[name] += 1
        try:
            await self._event(name).wait()
        finally:
            self._waiting[name] -= 1

    def open(self, name: str) -> int:
        """Open the gate for good; return how many sync calls it held until now."""
        self._event(name).set()
        return self._waiting[name]

    def to_json(self) -> dict[str, Any]:
        """The gates as the control API shows them."""
        return {
            name: {"open": event.is_set(), "waiting": self._waiting[name]}
            for name, event in self._events.items()
        }
