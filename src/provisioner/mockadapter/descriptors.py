"""Descriptor YAML to the component the request is about, fast for large deployment units.

A unit with 2,000 components has a ~1 MB descriptor, and it arrives once per component with only
the last line (`componentIdToProvision: <id>`) changing. Parsing it whole each time would dominate
the mock's work, so a COMPONENT_DESCRIPTOR written that way is split at that last line: the line is
parsed alone and the `dataProduct:` head goes through a small LRU cache keyed by a hash of its text.
Whenever the split does not clearly apply, the whole text is parsed, which is always correct.

A coordinator that sends each dependency's provisioning info (Tech Adapter API 2.6) makes the
head of a dependent differ from the shared one only by `info:` keys added to the entries of
its dependencies. Such a head is read as the shared head (through the cache) plus those small
`info:` blocks, each parsed alone; anything unexpected falls back to parsing the head whole.

Tolerant as real adapters are: a DATAPRODUCT_DESCRIPTOR whose YAML is component-shaped
(`dataProduct` + `componentIdToProvision`, as in Witboost's own request samples) is read as that
component.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from provisioner.mockadapter.errors import InvalidRequestError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

_ID_KEY = "componentIdToProvision"
_ID_LINE = re.compile(rf"^{_ID_KEY}\s*:", re.MULTILINE)
_HEAD_START = "dataProduct:"
# A document marker at the start of a line would make the head a stream of several documents.
_DOCUMENT_MARKERS = ("\n---", "\n...")
# Block YAML as dumpers write `dataProduct.components`: entries start with `  - `; their keys
# are indented by 4 (`    info:`), what belongs to a key by 6 or more; blank lines aside. The
# block ends at a line starting in column 0 or 1, or in column 2 with anything but `- `. Each
# pattern starts with a line break, which the regex engine finds fast in a megabyte of text.
_COMPONENTS_MARK = "\n  components:\n"
_ENTRY_START = re.compile(r"\n  - ")
_BLOCK_END = re.compile(r"\n(?:[^ \n]| [^ \n]|  [^ \n-]|  -[^ ])")
_INFO_KEY = re.compile(r"\n    info:")
_KEY_END = re.compile(r"\n(?:[^ \n]| {1,5}[^ \n])")


class DescriptorKind(StrEnum):
    """The descriptor kinds served (DATAPRODUCT_DESCRIPTOR_WITH_RESULTS is not used by adapters)."""

    COMPONENT = "COMPONENT_DESCRIPTOR"
    DATAPRODUCT = "DATAPRODUCT_DESCRIPTOR"


@dataclass(frozen=True, slots=True)
class DataProductView:
    """A parsed data product and an index of its components by id (first one wins)."""

    data_product: Mapping[str, Any]
    components: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Target:
    """What a request is about: the component (or data product) id and its descriptor mapping.

    `dependency_info` maps each id in the component's `dependsOn` to the `info` that dependency
    carries in `dataProduct.components` (None when it carries none or is not listed).
    """

    kind: DescriptorKind
    component_id: str
    component: Mapping[str, Any]
    dependency_info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CacheStats:
    """How often the parsed-head cache was used."""

    hits: int = 0
    misses: int = 0


def infer_kind(descriptor: str) -> DescriptorKind:
    """Guess the kind of a descriptor sent without one (2.1.0 ValidationRequest)."""
    return DescriptorKind.COMPONENT if _ID_LINE.search(descriptor) else DescriptorKind.DATAPRODUCT


def parse_yaml_mapping(text: str, *, what: str = "descriptor") -> Mapping[str, Any]:
    """Parse YAML text that must be a mapping, or raise InvalidRequestError."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: the safe constructor builds dates and times, which may be out of range.
        raise _invalid(f"{what}: not valid YAML ({exc})") from exc
    if not isinstance(document, Mapping):
        raise _invalid(f"{what}: must be a YAML mapping")
    return document


def split_component_descriptor(text: str) -> tuple[str, str] | None:
    """Split `dataProduct: ...` + a last `componentIdToProvision:` line; None if not so written."""
    if not text.startswith(_HEAD_START):
        return None
    cut = text.rfind(f"\n{_ID_KEY}:")
    if cut < 0:
        return None
    head, tail = text[: cut + 1], text[cut + 1 :]
    if "\n" in tail.rstrip():
        return None
    return head, tail


class DescriptorReader:
    """Finds the target of a request in its descriptor, caching parsed data products."""

    def __init__(self, *, cache_size: int = 8) -> None:
        self._cache: OrderedDict[tuple[DescriptorKind, bytes], DataProductView] = OrderedDict()
        self._cache_size = cache_size
        self.stats = CacheStats()

    def read(self, kind: DescriptorKind, descriptor: str) -> Target:
        """The target of a descriptor of the given kind; InvalidRequestError if there is none."""
        if kind is DescriptorKind.DATAPRODUCT:
            # An unusable text is parsed again, only to raise the precise problem.
            view = self._cached(kind, descriptor) or _index(parse_yaml_mapping(descriptor))
            if _is_component_shaped(view.data_product):
                return self._read_component(descriptor)
            return _data_product_target(view)
        return self._read_component(descriptor)

    def _read_component(self, descriptor: str) -> Target:
        split = split_component_descriptor(descriptor)
        if split is None:
            return read_component_fully(descriptor)
        head, tail = split
        try:
            # The last line alone fails to parse if it, say, refers to an anchor of the head.
            last_line = parse_yaml_mapping(tail, what=_ID_KEY)
        except InvalidRequestError:
            return read_component_fully(descriptor)
        view = self._cached(DescriptorKind.COMPONENT, head)
        if view is None:
            return read_component_fully(descriptor)
        return _component_target(view, last_line.get(_ID_KEY))

    def _cached(self, kind: DescriptorKind, text: str) -> DataProductView | None:
        key = (kind, hashlib.sha256(text.encode(errors="surrogatepass")).digest())
        view = self._cache.get(key)
        if view is not None:
            self.stats.hits += 1
            self._cache.move_to_end(key)
            return view
        self.stats.misses += 1
        view = self._dependent_view(text) if kind is DescriptorKind.COMPONENT else None
        if view is None:
            view = _parse_view(kind, text)
        if view is not None:
            self._cache[key] = view
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return view

    def _dependent_view(self, head: str) -> DataProductView | None:
        """A head whose entries carry `info:` blocks, read as the head without them (cached)
        plus each block parsed alone; None when it is not so written."""
        split = _split_infos(head)
        if split is None:
            return None
        base_text, blocks = split
        base = self._cached(DescriptorKind.COMPONENT, base_text)
        listed = base.data_product.get("components") if base is not None else None
        if base is None or not isinstance(listed, list):
            return None
        entries = list(listed)
        index = dict(base.components)
        for position, block in blocks:
            try:
                parsed = parse_yaml_mapping(block, what="info")
            except InvalidRequestError:
                return None
            if position >= len(entries) or not isinstance(entries[position], Mapping):
                return None
            if list(parsed) != ["info"]:
                return None
            original = entries[position]
            entries[position] = {**original, "info": parsed["info"]}
            component_id = original.get("id")
            if isinstance(component_id, str) and index.get(component_id) is original:
                index[component_id] = entries[position]
        return DataProductView({**base.data_product, "components": entries}, index)


def _split_infos(head: str) -> tuple[str, list[tuple[int, str]]] | None:
    """The head without the `info:` keys of its component entries, and each such block with
    the position of its entry; None when there is none (or the layout is not the usual)."""
    mark = head.find(_COMPONENTS_MARK)
    if mark < 0:
        return None
    start = mark + len(_COMPONENTS_MARK)
    found = _BLOCK_END.search(head, start)
    end = found.start() + 1 if found is not None else len(head)
    spans: list[tuple[int, int]] = []
    for match in _INFO_KEY.finditer(head, start - 1, end):
        line_end = head.find("\n", match.start() + 1, end)
        if line_end < 0:
            return None
        after = _KEY_END.search(head, line_end, end)
        spans.append((match.start() + 1, after.start() + 1 if after is not None else end))
    if not spans:
        return None
    starts = [match.start() + 1 for match in _ENTRY_START.finditer(head, start - 1, end)]
    pieces, blocks, cursor = [], [], 0
    for span_start, span_end in spans:
        position = bisect.bisect_right(starts, span_start) - 1
        if position < 0:
            return None
        pieces.append(head[cursor:span_start])
        blocks.append((position, head[span_start:span_end]))
        cursor = span_end
    pieces.append(head[cursor:])
    return "".join(pieces), blocks


def read_component_fully(descriptor: str) -> Target:
    """The target of a COMPONENT_DESCRIPTOR by parsing the whole text (the reference result)."""
    document = parse_yaml_mapping(descriptor)
    data_product = document.get("dataProduct")
    if not isinstance(data_product, Mapping):
        raise _invalid("dataProduct: is required and must be a mapping")
    return _component_target(_index(data_product), document.get(_ID_KEY))


def _parse_view(kind: DescriptorKind, text: str) -> DataProductView | None:
    """Parse a data product (or a `dataProduct:` head); None when it is not usable as one."""
    if kind is DescriptorKind.COMPONENT and any(mark in text for mark in _DOCUMENT_MARKERS):
        return None
    try:
        document = parse_yaml_mapping(text)
    except InvalidRequestError:
        return None
    data_product = document.get("dataProduct") if kind is DescriptorKind.COMPONENT else document
    return _index(data_product) if isinstance(data_product, Mapping) else None


def _index(data_product: Mapping[str, Any]) -> DataProductView:
    components: dict[str, Mapping[str, Any]] = {}
    listed = data_product.get("components")
    for component in listed if isinstance(listed, list) else ():
        if isinstance(component, Mapping) and isinstance(component.get("id"), str):
            components.setdefault(component["id"], component)
    return DataProductView(data_product, components)


def _is_component_shaped(document: Mapping[str, Any]) -> bool:
    """Whether a "data product" is in fact a COMPONENT_DESCRIPTOR body."""
    return isinstance(document.get("dataProduct"), Mapping) and _ID_KEY in document


def _component_target(view: DataProductView, component_id: object) -> Target:
    if not isinstance(component_id, str):
        raise _invalid(f"{_ID_KEY}: is required and must be a string")
    component = view.components.get(component_id)
    if component is None:
        raise _invalid(
            f"{_ID_KEY}: no component with id {component_id!r} in dataProduct.components"
        )
    return Target(
        DescriptorKind.COMPONENT, component_id, component, _dependency_info(view, component)
    )


def _dependency_info(view: DataProductView, component: Mapping[str, Any]) -> dict[str, Any]:
    """The `info` each dependency of the component carries; dict lookups only, no parsing."""
    depends_on = component.get("dependsOn")
    if not isinstance(depends_on, list) or not depends_on:
        return {}
    found: dict[str, Any] = {}
    for dependency_id in depends_on:
        if isinstance(dependency_id, str):
            dependency = view.components.get(dependency_id)
            found[dependency_id] = None if dependency is None else dependency.get("info")
    return found


def unreadable_acl_request(text: str, problem: InvalidRequestError) -> InvalidRequestError:
    """Why `provisionInfo.request` of an updateacl is not a COMPONENT_DESCRIPTOR, clearly.

    Real adapters read it with a YAML parser and take its `dataProduct`. A JSON
    ProvisioningRequest is YAML too, a mapping with `descriptorKind`/`descriptor` keys: the
    mistake of sending the request instead of its descriptor gets its own message.
    """
    try:
        document: Mapping[str, Any] | None = parse_yaml_mapping(text)
    except InvalidRequestError:
        document = None
    if (
        document is not None
        and "dataProduct" not in document
        and ("descriptorKind" in document or "descriptor" in document)
    ):
        problems = [
            "provisionInfo.request: is a ProvisioningRequest {descriptorKind, descriptor, ...}; "
            "it must be the COMPONENT_DESCRIPTOR YAML itself (dataProduct + "
            f"{_ID_KEY}), which Tech Adapters read with a YAML parser"
        ]
    else:
        problems = [f"provisionInfo.request: {item}" for item in problem.problems]
    return InvalidRequestError(
        problems, user_message="provisionInfo.request is not a COMPONENT_DESCRIPTOR"
    )


def _data_product_target(view: DataProductView) -> Target:
    data_product_id = view.data_product.get("id")
    if not isinstance(data_product_id, str):
        raise _invalid("id: the data product id is required and must be a string")
    return Target(DescriptorKind.DATAPRODUCT, data_product_id, view.data_product)


def _invalid(problem: str) -> InvalidRequestError:
    return InvalidRequestError([problem], user_message="The descriptor is invalid")
