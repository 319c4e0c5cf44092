"""The events provisioner publishes to Market Planes, built from what was fixed when they were
published.

An event is a JSON object: ``eventId`` (its idempotency key: a receiver may see an event more
than once, delivery being at least once), ``sequence`` (increasing with every event of a release,
not contiguous: a receiver that already applied a higher one can ignore a late duplicate),
``event``, ``deploymentUnitId``, ``environment``, ``version``, ``operationId``, ``occurredAt``,
and what the event is about:

- ``DEPLOYED``: ``descriptor``, the deployed descriptor with each member's ``info.publicInfo``;
- ``UNDEPLOYED``: ``components``, the ids undeployed, and ``wholeUnit`` (the unit itself too);
- ``ACL_UPDATED``: ``componentId`` and the ``refs`` granted access.

Adapters' ``privateInfo`` is never in an event, wherever it was written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from provisioner.domain.privacy import without_private
from provisioner.domain.status import OperationStatus, OperationType

JSON = dict[str, Any]


class PublicationEvent(StrEnum):
    DEPLOYED = "DEPLOYED"
    UNDEPLOYED = "UNDEPLOYED"
    ACL_UPDATED = "ACL_UPDATED"


_PUBLISHED_ON = {
    OperationType.DEPLOY: PublicationEvent.DEPLOYED,
    OperationType.UNDEPLOY: PublicationEvent.UNDEPLOYED,
    OperationType.UPDATE_ACL: PublicationEvent.ACL_UPDATED,
}


def event_after(operation: OperationType, outcome: OperationStatus) -> PublicationEvent | None:
    """The event an operation publishes once it ended with ``outcome``: only success is
    announced (a deploy every one of whose tasks succeeded, likewise an undeploy and an ACL
    update; an override is an operator's repair, not a change of the release)."""
    if outcome is not OperationStatus.SUCCEEDED:
        return None
    return _PUBLISHED_ON.get(operation)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationFacts:
    """What every event says, as recorded when it was published."""

    publication_id: int  # the event's ``sequence``
    event_id: str
    event: PublicationEvent
    deployment_unit_id: str
    environment: str
    version: str | None
    operation_id: str
    occurred_at: datetime


def _envelope(facts: PublicationFacts) -> JSON:
    return {
        "eventId": facts.event_id,
        "sequence": facts.publication_id,
        "event": facts.event.value,
        "deploymentUnitId": facts.deployment_unit_id,
        "environment": facts.environment,
        "version": facts.version,
        "operationId": facts.operation_id,
        "occurredAt": timestamp(facts.occurred_at),
    }


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the REST API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public_descriptor(document: Mapping[str, Any], public_info: Mapping[str, JSON | None]) -> JSON:
    """The unit descriptor with each member's ``info: {publicInfo}`` and no ``privateInfo``.

    ``public_info`` is keyed by component id, and by the unit id for the unit itself; a member
    without public info (None) keeps what the descriptor says. The input is not modified.
    """
    result: JSON = without_private(document)
    unit_info = public_info.get(str(result.get("id")))
    if unit_info is not None:
        result["info"] = {"publicInfo": without_private(unit_info)}
    components = result.get("components")
    if isinstance(components, list):
        for component in components:
            info = (
                public_info.get(str(component.get("id"))) if isinstance(component, dict) else None
            )
            if info is not None:
                component["info"] = {"publicInfo": without_private(info)}
    return result


def deployed_event(
    facts: PublicationFacts,
    document: Mapping[str, Any],
    public_info: Mapping[str, JSON | None],
) -> JSON:
    """``DEPLOYED``: the release as it was deployed, each member with its public info."""
    return {**_envelope(facts), "descriptor": public_descriptor(document, public_info)}


def undeployed_event(
    facts: PublicationFacts, components: Sequence[str], *, whole_unit: bool
) -> JSON:
    """``UNDEPLOYED``: which components the undeploy removed, and whether the unit went too."""
    return {**_envelope(facts), "components": list(components), "wholeUnit": whole_unit}


def acl_updated_event(facts: PublicationFacts, component_id: str, refs: Sequence[str]) -> JSON:
    """``ACL_UPDATED``: the users and groups granted access to a deployed component."""
    return {**_envelope(facts), "componentId": component_id, "refs": list(refs)}


def acl_detail(component_id: str, refs: Sequence[str]) -> JSON:
    """What an ``ACL_UPDATED`` publication records to build its event from later."""
    return {"componentId": component_id, "refs": list(refs)}


def encode_event(event: Mapping[str, Any]) -> bytes:
    """The body delivered: compact UTF-8 JSON, the same bytes every time for one event (the
    signature and a receiver's deduplication depend on it)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
