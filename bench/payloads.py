"""The provision requests of a first deploy, built the way the service builds them.

The texts come from the project's own serialisation (``DescriptorTexts``, ``SharedText``), once
per operation, so the baseline sends what the service sends byte for byte. On a first deploy the
service's ``latestEnrichedDescriptor`` is the unit descriptor with an empty ``info`` on the unit
and on every component (each member has a state, none has a result yet); the benchmark checks
this against what the mock adapter received from the service (``parity_problems``). A component
with dependencies is sent each dependency's ``info`` as its adapter answered it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provisioner.domain.rendering import (
    DescriptorTexts,
    ProvisioningRecord,
    SharedText,
    enrich_descriptor,
    to_yaml,
)

_NO_RECORD = ProvisioningRecord(public_info=None, private_info=None, operation=None, status=None)


class FirstDeployPayloads:
    """The ``POST /v1/provision`` bodies of one unit's first deploy."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._texts = DescriptorTexts(document)
        self._texts.prepare(system=False, dependents=True)
        members = [document["id"], *(c["id"] for c in document["components"])]
        self.enriched = SharedText(
            to_yaml(enrich_descriptor(document, dict.fromkeys(members, _NO_RECORD)))
        )
        self.enriched.json_parts()

    def descriptor_text(
        self, component_id: str, dependencies: Mapping[str, Any] | None = None
    ) -> str:
        return self._texts.component(component_id, dependencies).text

    def body(
        self, component_id: str, dependencies: Mapping[str, Any] | None = None
    ) -> tuple[bytes | memoryview, ...]:
        """The ProvisioningRequest JSON for one component, as the parts the service streams
        (the encoded descriptor texts are shared, not copied per request); ``dependencies``:
        the ``info`` of each of its dependencies."""
        return (
            b'{"descriptorKind":"COMPONENT_DESCRIPTOR","descriptor":',
            *self._texts.component(component_id, dependencies).json_parts(),
            b',"removeData":false,"latestEnrichedDescriptor":',
            *self.enriched.json_parts(),
            b"}",
        )


def parity_problems(payloads: FirstDeployPayloads, received: Mapping[str, Any]) -> list[str]:
    """How a request the mock received from the service differs from what we would send."""
    problems = []
    component_id = received["componentId"]
    carried = received.get("dependencyInfo") or {}
    dependencies = {key: info for key, info in carried.items() if info is not None}
    if received.get("descriptorKind") != "COMPONENT_DESCRIPTOR":
        problems.append(f"descriptorKind {received.get('descriptorKind')!r}")
    if received.get("removeData") is not False:
        problems.append(f"removeData {received.get('removeData')!r}")
    if received.get("descriptor") != payloads.descriptor_text(component_id, dependencies):
        problems.append("descriptor text differs")
    if received.get("latestEnrichedDescriptor") != payloads.enriched.text:
        problems.append("latestEnrichedDescriptor text differs")
    body = json.loads(b"".join(payloads.body(component_id, dependencies)))
    if body["descriptor"] != payloads.descriptor_text(component_id, dependencies):
        problems.append("the baseline body does not decode to its own descriptor")
    return problems
