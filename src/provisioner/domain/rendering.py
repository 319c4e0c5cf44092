"""The descriptor texts sent to Tech Adapters, serialised once per operation.

A ``COMPONENT_DESCRIPTOR`` is ``{dataProduct: <unit>, componentIdToProvision: <id>}``. The unit
part is the same for every component of an operation, so it is dumped to YAML once and encoded
once as the UTF-8 bytes of a JSON string; each component only adds its own last line. Requests
are then sent as a sequence of byte parts that share those encodings, so neither the CPU nor
the memory cost of a request grows with the size of the unit: for a unit of thousands of
components this is the difference between one serialisation and thousands, and between one
copy of the descriptor in memory and one per request in flight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import yaml

from provisioner.domain.status import OperationType, TaskStatus

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(data: Any) -> str:
    """Block-style YAML that keeps key order and non-ASCII text as written."""
    return str(
        yaml.dump(
            data,
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=4096,
        )
    )


class WireText(Protocol):
    """A YAML text for the wire, as the parts of its JSON string encoding."""

    @property
    def text(self) -> str: ...

    def json_parts(self) -> tuple[bytes, ...]:
        """UTF-8 bytes that, concatenated, are the text as a JSON string (quotes included)."""
        ...


def _json_bytes(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


class SharedText:
    """A text sent many times; its JSON encoding is computed once, on first use."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def encoded(self) -> bytes:
        """The JSON string, quotes included."""
        return _json_bytes(self.text)

    @cached_property
    def encoded_open(self) -> bytes:
        """The JSON string without its closing quote, to be continued by another part."""
        return self.encoded[:-1]

    def json_parts(self) -> tuple[bytes, ...]:
        return (self.encoded,)


@dataclass(frozen=True, slots=True)
class ComponentDescriptorText:
    """``head`` (the shared ``dataProduct:`` block) followed by this component's own line."""

    head: SharedText
    tail: str

    @property
    def text(self) -> str:
        return self.head.text + self.tail

    def json_parts(self) -> tuple[bytes, ...]:
        # A JSON string encoding escapes character by character, so the encoding of a
        # concatenation is the concatenation of the encodings, less the inner quotes.
        return (self.head.encoded_open, _json_bytes(self.tail)[1:])


class DescriptorTexts:
    """The texts derived from one unit descriptor, each built at most once."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document

    @cached_property
    def unit(self) -> SharedText:
        """The ``DATAPRODUCT_DESCRIPTOR``: the unit descriptor itself."""
        return SharedText(to_yaml(dict(self._document)))

    @cached_property
    def _component_head(self) -> SharedText:
        return SharedText(to_yaml({"dataProduct": dict(self._document)}))

    def prepare(self, *, system: bool) -> None:
        """Serialise ahead of use what the system step (or a component step) will send."""
        if system:
            self.unit.json_parts()
        else:
            self._component_head.encoded_open  # noqa: B018 - computes and caches it

    def component(self, component_id: str) -> ComponentDescriptorText:
        """The ``COMPONENT_DESCRIPTOR`` of one component."""
        return ComponentDescriptorText(head=self._component_head, tail=_id_line(component_id))


def _id_line(component_id: str) -> str:
    """``componentIdToProvision: "<id>"``, the id as a double-quoted YAML scalar.

    The JSON string of printable text is a valid YAML double-quoted scalar (JSON leaves
    DEL, C1 controls and line separators raw, which YAML refuses or folds). Validated ids are
    printable; anything else takes the YAML dumper's path. This line is written once per
    request, where the dumper cost a millisecond.
    """
    if not component_id.isprintable():
        return to_yaml({"componentIdToProvision": component_id})
    return f"componentIdToProvision: {json.dumps(component_id, ensure_ascii=False)}\n"


@dataclass(frozen=True, slots=True)
class ProvisioningRecord:
    """What the last operation on a component left: its adapter info and outcome."""

    public_info: Mapping[str, Any] | None
    private_info: Mapping[str, Any] | None
    operation: OperationType | None
    status: TaskStatus | None


_OPERATION_NAMES = {OperationType.DEPLOY: "Deploy", OperationType.UNDEPLOY: "Undeploy"}
_STATUS_NAMES = {
    TaskStatus.SUCCEEDED: "Successful",
    TaskStatus.FAILED: "Failed",
    TaskStatus.CANCELLED: "Failed",
    TaskStatus.RUNNING: "Running",
    TaskStatus.WAITING: "NotStarted",
    TaskStatus.SKIPPED: "NotStarted",
}


def enrich_descriptor(
    document: Mapping[str, Any], records: Mapping[str, ProvisioningRecord]
) -> dict[str, Any]:
    """The unit descriptor with each member's ``info`` and ``latestProvisioningOperation``.

    ``records`` is keyed by component id, and by the unit id for the system itself. The input
    is not modified; only the mappings that gain an ``info`` are copied.
    """
    enriched = dict(document)
    unit_id = document.get("id")
    if isinstance(unit_id, str) and unit_id in records:
        enriched["info"] = _info(records[unit_id])
    components = document.get("components")
    if isinstance(components, list):
        enriched["components"] = [
            {**component, "info": _info(records[component["id"]])}
            if isinstance(component, dict) and component.get("id") in records
            else component
            for component in components
        ]
    return enriched


def _info(record: ProvisioningRecord) -> dict[str, Any]:
    info: dict[str, Any] = {
        "publicInfo": dict(record.public_info or {}),
        "privateInfo": dict(record.private_info or {}),
    }
    if record.operation is not None and record.status is not None:
        info["latestProvisioningOperation"] = {
            "operation": _OPERATION_NAMES[record.operation],
            "status": _STATUS_NAMES[record.status],
        }
    return info
