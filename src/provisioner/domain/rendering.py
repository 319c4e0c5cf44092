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

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import yaml

from provisioner.domain.status import OperationType, TaskStatus

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_DUMP_OPTIONS: dict[str, Any] = {
    "Dumper": _Dumper,
    "sort_keys": False,
    "allow_unicode": True,
    "default_flow_style": False,
    "width": 4096,
}

# A part of a request body: shared bytes, or a slice of them (no copy).
Chunk = bytes | memoryview


def to_yaml(data: Any) -> str:
    """Block-style YAML that keeps key order and non-ASCII text as written."""
    return str(yaml.dump(data, **_DUMP_OPTIONS))


class WireText(Protocol):
    """A YAML text for the wire, as the parts of its JSON string encoding."""

    @property
    def text(self) -> str: ...

    def json_parts(self) -> tuple[Chunk, ...]:
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

    def json_parts(self) -> tuple[Chunk, ...]:
        return (self.encoded,)


@dataclass(frozen=True, slots=True)
class ComponentDescriptorText:
    """``head`` (the shared ``dataProduct:`` block) followed by this component's own line."""

    head: SharedText
    tail: str

    @property
    def text(self) -> str:
        return self.head.text + self.tail

    def json_parts(self) -> tuple[Chunk, ...]:
        # A JSON string encoding escapes character by character, so the encoding of a
        # concatenation is the concatenation of the encodings, less the inner quotes.
        return (self.head.encoded_open, _json_bytes(self.tail)[1:])


class DescriptorTexts:
    """The texts derived from one unit descriptor, each built at most once.

    A component that depends on others is sent the unit with each dependency's ``info``
    (Tech Adapter API 2.6: "the COMPONENT_DESCRIPTOR descriptor will be enriched with the
    Provisioning Info of the dependency component"). Its text differs from the shared one only
    in those dependencies' entries of ``components``, so it is spliced: the shared text, cut
    once at every entry, with the entries of its dependencies replaced (and their encodings
    sent as slices of the shared encoding, not copies). Dumping the unit again for every
    dependent would cost a serialisation of the whole unit per component.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document
        self._dependent_heads: dict[tuple[str, ...], _SplicedHead | SharedText | None] = {}
        self._entries: dict[str, str] = {}

    @cached_property
    def unit(self) -> SharedText:
        """The ``DATAPRODUCT_DESCRIPTOR``: the unit descriptor itself."""
        return SharedText(to_yaml(dict(self._document)))

    @cached_property
    def _component_head(self) -> SharedText:
        return SharedText(to_yaml({"dataProduct": dict(self._document)}))

    def prepare(self, *, system: bool, dependents: bool = False) -> None:
        """Serialise ahead of use what the system step (or a component step) will send;
        ``dependents``: also cut the shared text for components with dependencies."""
        if system:
            self.unit.json_parts()
            return
        self._component_head.encoded_open  # noqa: B018 - computes and caches it
        if dependents:
            self._cuts  # noqa: B018 - likewise

    def component(
        self, component_id: str, dependencies: Mapping[str, Mapping[str, Any]] | None = None
    ) -> WireText:
        """The ``COMPONENT_DESCRIPTOR`` of one component.

        ``dependencies`` maps ids of its dependencies to the ``info`` each carries in
        ``dataProduct.components``. Texts are kept per set of dependency ids, so the info of a
        dependency must not change for the life of this object (one run of an operation, where
        a dependent is sent only once its dependencies have ended).
        """
        tail = _id_line(component_id)
        head = self._dependent_head(dependencies) if dependencies else None
        if isinstance(head, _SplicedHead):
            return DependentDescriptorText(head=head, tail=tail)
        return ComponentDescriptorText(head=head or self._component_head, tail=tail)

    def _dependent_head(
        self, dependencies: Mapping[str, Mapping[str, Any]]
    ) -> _SplicedHead | SharedText | None:
        key = tuple(sorted(dependencies))
        if key not in self._dependent_heads:
            self._dependent_heads[key] = self._build_dependent_head(dependencies)
        return self._dependent_heads[key]

    def _build_dependent_head(
        self, dependencies: Mapping[str, Mapping[str, Any]]
    ) -> _SplicedHead | SharedText | None:
        cuts = self._cuts
        entries = None if cuts is None else self._spliced_entries(cuts, dependencies)
        if cuts is not None and entries is not None:
            return _SplicedHead(cuts, entries) if entries else None
        # The shared text cannot be cut exactly there: dump this variant whole.
        enriched = _with_info(self._document, dependencies)
        return None if enriched is None else SharedText(to_yaml({"dataProduct": enriched}))

    def _spliced_entries(
        self, cuts: _Cuts, dependencies: Mapping[str, Mapping[str, Any]]
    ) -> dict[int, str] | None:
        """The new entry of each dependency listed in the unit, by position; None if one
        cannot be spliced."""
        entries: dict[int, str] = {}
        for dependency_id, info in dependencies.items():
            position = cuts.index.get(dependency_id)
            if position is None:
                continue  # not a component of this descriptor
            entry = self._entries.get(dependency_id) or _enriched_entry(cuts, position, info)
            if entry is None:
                return None
            self._entries[dependency_id] = entries[position] = entry
        return entries

    @cached_property
    def _cuts(self) -> _Cuts | None:
        return _cut(self._component_head, self._document)


# How the dumper writes ``dataProduct.components``: the key, then its entries, indentless
# (``  - `` at the start of a line); an entry's own lines are indented further, blank lines
# aside (quoted scalars write line breaks so). The first other line ends the block: one that
# starts in column 0 or 1, or in column 2 with anything but ``- ``. The patterns start with a
# line break, which the regex engine looks for quickly (a 1.2 MB unit is cut in milliseconds).
_ENTRIES_HEADER = "dataProduct:\n  components:\n"
_ENTRIES_MARK = "\n  components:\n"
_ENTRY_START = re.compile(r"\n  - ")
_BLOCK_END = re.compile(r"\n(?:[^ \n]| [^ \n]|  [^ \n-]|  -[^ ])")
_ANCHOR = re.compile(r"&id[0-9]{3}")  # how the dumper names anchors


def _component_entries(components: Sequence[Any]) -> list[str] | None:
    """Each entry of ``dataProduct.components`` as the dumper writes it in place, in one call
    (one document per entry, each written as its own ``dataProduct.components``)."""
    text = str(
        yaml.dump_all(({"dataProduct": {"components": [c]}} for c in components), **_DUMP_OPTIONS)
    )
    if not text.startswith(_ENTRIES_HEADER):
        return None
    entries = text[len(_ENTRIES_HEADER) :].split("---\n" + _ENTRIES_HEADER)
    return entries if len(entries) == len(components) else None


@dataclass(frozen=True, slots=True)
class _Cuts:
    """The shared ``dataProduct:`` text and where each entry of its ``components`` starts and
    ends, in the text (``chars``) and in its JSON encoding without the closing quote (``at``):
    entry ``i`` spans ``chars[i]:chars[i + 1]``."""

    head: SharedText
    components: Sequence[Any]
    index: Mapping[str, int]
    chars: tuple[int, ...]
    at: tuple[int, ...]


def _cut(head: SharedText, document: Mapping[str, Any]) -> _Cuts | None:
    """Find where each entry of the unit's components is in ``head``, from the lines that
    start one (no serialisation); None when they do not add up to the components."""
    components = document.get("components")
    if not isinstance(components, list) or not components:
        return None
    text = head.text
    mark = text.find(_ENTRIES_MARK)
    if mark < 0:
        return None
    start = mark + len(_ENTRIES_MARK)
    found = _BLOCK_END.search(text, start)
    end = found.start() + 1 if found is not None else len(text)
    chars = [match.start() + 1 for match in _ENTRY_START.finditer(text, start - 1, end)]
    if len(chars) != len(components) or chars[0] != start:
        return None
    chars.append(end)
    offsets = [len(_json_bytes(text[:start])) - 1]
    for begin, finish in itertools.pairwise(chars):
        offsets.append(offsets[-1] + len(_json_bytes(text[begin:finish])) - 2)
    index: dict[str, int] = {}
    for position, component in enumerate(components):
        if isinstance(component, dict) and isinstance(component.get("id"), str):
            index.setdefault(component["id"], position)
    return _Cuts(head, components, index, tuple(chars), tuple(offsets))


def _enriched_entry(cuts: _Cuts, position: int, info: Mapping[str, Any]) -> str | None:
    """Entry ``position`` with ``info``, exactly as the dumper writes it in place; None when
    that cannot be made from the shared text (then the variant is dumped whole).

    An entry without ``info`` gains it as its last key: the entry as the shared text holds it,
    then the ``info:`` lines (the dumper writes a mapping key by key). An entry that has one
    is dumped again with it replaced, checked against what the shared text holds (YAML
    anchors may tie it to other parts of the unit).
    """
    component = cuts.components[position]
    if not isinstance(component, dict) or not component:
        return None
    held = cuts.head.text[cuts.chars[position] : cuts.chars[position + 1]]
    if "info" not in component:
        lines = _info_lines(info)
        return None if lines is None else held + lines
    dumped = _component_entries([component, {**component, "info": dict(info)}])
    if dumped is None:
        return None
    original, enriched = dumped
    return enriched if original == held else None


def _info_lines(info: Mapping[str, Any]) -> str | None:
    """``info: ...`` as the lines of a key after the first of an entry of ``components``."""
    entry = (_component_entries([{"": None, "info": dict(info)}]) or [""])[0]
    first, _, rest = entry.partition("\n")
    # An anchor here could shadow one of the unit's, for the aliases after it.
    if first != "  - '': null" or not rest.startswith("    info:") or _ANCHOR.search(rest):
        return None
    return rest


class _SplicedHead:
    """The shared ``dataProduct:`` text with some entries of ``components`` replaced."""

    def __init__(self, cuts: _Cuts, entries: Mapping[int, str]) -> None:
        self._cuts = cuts
        self._entries = sorted(entries.items())

    @cached_property
    def open_parts(self) -> tuple[Chunk, ...]:
        """The JSON string encoding, without its closing quote, as slices of the shared one."""
        shared = memoryview(self._cuts.head.encoded_open)
        parts: list[Chunk] = []
        cursor = 0
        for position, entry in self._entries:
            parts += [shared[cursor : self._cuts.at[position]], _json_bytes(entry)[1:-1]]
            cursor = self._cuts.at[position + 1]
        parts.append(shared[cursor:])
        return tuple(parts)

    @cached_property
    def text(self) -> str:
        shared = self._cuts.head.text
        pieces: list[str] = []
        cursor = 0
        for position, entry in self._entries:
            pieces += [shared[cursor : self._cuts.chars[position]], entry]
            cursor = self._cuts.chars[position + 1]
        pieces.append(shared[cursor:])
        return "".join(pieces)


@dataclass(frozen=True, slots=True)
class DependentDescriptorText:
    """The ``COMPONENT_DESCRIPTOR`` of a component whose dependencies carry their ``info``."""

    head: _SplicedHead
    tail: str

    @property
    def text(self) -> str:
        return self.head.text + self.tail

    def json_parts(self) -> tuple[Chunk, ...]:
        return (*self.head.open_parts, _json_bytes(self.tail)[1:])


def _with_info(
    document: Mapping[str, Any], dependencies: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The unit with ``info`` on the given components; None if none of them is listed."""
    components = document.get("components")
    if not isinstance(components, list):
        return None
    changed = False
    listed: list[Any] = []
    for component in components:
        if isinstance(component, dict) and component.get("id") in dependencies:
            listed.append({**component, "info": dict(dependencies[component["id"]])})
            changed = True
        else:
            listed.append(component)
    return {**document, "components": listed} if changed else None


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
