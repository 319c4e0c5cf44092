"""Reading untrusted YAML and JSON documents into plain JSON-compatible data.

Descriptors arrive from CI pipelines and users, so the loaders refuse what could hurt the service
or be misread. The composed YAML node graph is measured before anything is built: alias bombs
("billion laughs") are refused by their expanded node count and by their expanded text (so that
a small body cannot become a descriptor far larger than the body limit), recursive aliases are
refused, and nesting is bounded (serialisers recurse). Only the JSON-compatible YAML types are
accepted, and only values JSON can hold: no NaN or infinity, no sexagesimal (base 60) numbers,
no integer of more than ``MAX_INTEGER_DIGITS`` digits. A key written twice in one mapping is
refused when the values differ (which one was meant is anyone's guess) and reported as a warning
when they are the same. Timestamps stay the strings they were written as and mapping keys are
the text of their scalar, so a descriptor round-trips to JSON without loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.errors import BadRequestError, Problem

MAX_DEPTH = 64
MAX_NODES = 2_000_000
# The expanded text (characters of every scalar, aliases counted each time they are used) of a
# YAML document. Callers pass their body limit; this default is the default body limit.
MAX_TEXT = 5 * 1024 * 1024
# Python's own limit on converting integers to and from decimal text: the service could not
# store or send a larger one. Independent of the interpreter's setting, so behaviour is too.
MAX_INTEGER_DIGITS = 4300
# Warnings listed individually; more are counted in one last warning.
MAX_WARNINGS = 100

_INTEGER_BOUND = 10**MAX_INTEGER_DIGITS
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CORE = "tag:yaml.org,2002:"
_TIMESTAMP = _CORE + "timestamp"
_MERGE = _CORE + "merge"
# Each JSON-compatible tag, with the kind of node it can be written on.
_ALLOWED_TAGS: dict[str, type[yaml.Node]] = {
    **{_CORE + name: yaml.ScalarNode for name in ("str", "int", "float", "bool", "null", "merge")},
    _CORE + "map": yaml.MappingNode,
    _CORE + "seq": yaml.SequenceNode,
}
_KINDS = {
    yaml.ScalarNode: "a scalar",
    yaml.SequenceNode: "a sequence",
    yaml.MappingNode: "a mapping",
}


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """A document read from untrusted text, with what was noticed that did not stop it.

    ``warnings`` name each harmless oddity (a key repeated with the same value) by its path.
    """

    value: Any
    warnings: tuple[Problem, ...] = ()


def load_yaml(
    text: str,
    *,
    max_text: int = MAX_TEXT,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    path: str = "",
) -> LoadedDocument:
    """Parse one YAML document safely; raise ``BadRequestError`` for anything unusable.

    ``path`` names the document in warnings and errors (``descriptor`` gives
    ``descriptor.components[0].id``).
    """
    loader = _DescriptorLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise BadRequestError("the document is empty")
        check = _NodeGraphCheck(max_text=max_text, max_nodes=max_nodes, max_depth=max_depth)
        check.run(node, path)
        return LoadedDocument(loader.construct_document(node), check.duplicates.warnings())
    except yaml.YAMLError as exc:
        raise BadRequestError(f"malformed YAML: {_describe(exc)}") from None
    finally:
        loader.dispose()


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH, path: str = "") -> LoadedDocument:
    """Parse a JSON document; refuse malformed text, non-finite or oversized numbers, keys
    repeated with different values, and excessive nesting."""
    duplicates = _Duplicates()
    try:
        value = json.loads(
            data,
            object_pairs_hook=duplicates.json_object,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"malformed JSON: {exc}") from None
    _check_json(value, max_depth=max_depth)
    duplicates.locate_json(value, path)
    return LoadedDocument(value, duplicates.warnings())


# --- YAML ------------------------------------------------------------------------------------


def _yaml_error(node: yaml.Node, message: str) -> BadRequestError:
    return BadRequestError(f"{message} (line {_line(node)})")


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    if ":" in node.value:
        # YAML 1.1 reads 1:30 as 90; YAML 1.2 and JSON have no such numbers. Ask, don't guess.
        raise _yaml_error(node, f"{_excerpt(node.value)} is a sexagesimal number: quote it")
    digits = node.value.lstrip("+-").replace("_", "")
    if digits.isdigit() and not digits.startswith("0") and len(digits) > MAX_INTEGER_DIGITS:
        raise _yaml_error(node, _too_many_digits())  # before int() refuses it in its own words
    try:
        value: int = yaml.SafeLoader.construct_yaml_int(loader, node)
    except (ValueError, IndexError):  # an explicit !!int on text that is no integer
        raise _yaml_error(node, f"{_excerpt(node.value)} is not an integer") from None
    if not -_INTEGER_BOUND < value < _INTEGER_BOUND:  # 0x, 0b and 0 (octal) are not bounded
        raise _yaml_error(node, _too_many_digits())
    return value


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    if ":" in node.value:
        raise _yaml_error(node, f"{_excerpt(node.value)} is a sexagesimal number: quote it")
    try:
        value: float = yaml.SafeLoader.construct_yaml_float(loader, node)
    except (ValueError, IndexError):
        raise _yaml_error(node, f"{_excerpt(node.value)} is not a number") from None
    if not math.isfinite(value):
        raise _yaml_error(node, f"{_excerpt(node.value)} is not a finite number, which JSON needs")
    return value


def _construct_bool(loader: Any, node: yaml.ScalarNode) -> bool:
    try:
        value: bool = yaml.SafeLoader.construct_yaml_bool(loader, node)
    except KeyError:  # an explicit !!bool on text that is no boolean
        raise _yaml_error(node, f"{_excerpt(node.value)} is not a boolean") from None
    return value


class _DescriptorLoader(_BaseLoader):  # type: ignore[misc]
    """Safe loader without implicit timestamps, with string keys and JSON-compatible numbers."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        # Keys are scalars and duplicates were dealt with by _NodeGraphCheck. After merging,
        # keys written locally come last and win over merged ones, as YAML says.
        self.flatten_mapping(node)
        return {
            key_node.value: self.construct_object(value_node, deep=deep)
            for key_node, value_node in node.value
        }


_DescriptorLoader.add_constructor(_CORE + "int", _construct_int)
_DescriptorLoader.add_constructor(_CORE + "float", _construct_float)
_DescriptorLoader.add_constructor(_CORE + "bool", _construct_bool)


# A path built only when it is reported: (parent, key or index), from the root's name.
_Chain = tuple[Any, str | int] | str


def _render(chain: _Chain) -> str:
    parts: list[str | int] = []
    while not isinstance(chain, str):
        chain, label = chain
        parts.append(label)
    text = chain
    for label in reversed(parts):
        if isinstance(label, int):
            text = f"{text}[{label}]"
        else:
            text = f"{text}.{label}" if text else label
    return text


class _NodeGraphCheck:
    """Measure the document as it would be once aliases are expanded, and find repeated keys.

    Aliases make the composed graph a DAG (or a cycle, for a recursive alias); the expanded
    node count, text and depth are computed once per distinct node, so a billion-laughs
    document costs as little to refuse as it takes to read.
    """

    def __init__(self, *, max_text: int, max_nodes: int, max_depth: int) -> None:
        self.limits = (max_text, max_nodes, max_depth)
        self.measures: dict[int, tuple[int, int, int]] = {}  # node id: (text, nodes, depth)
        self.duplicates = _Duplicates()
        # Comparing repeated values costs at most this many steps in the whole document.
        self.comparisons_left = max_nodes

    def run(self, root: yaml.Node, path: str) -> None:
        if isinstance(root, yaml.ScalarNode):
            self._scalar(root)
            return
        measures, on_path = self.measures, set[int]()
        stack: list[tuple[yaml.Node, _Chain, bool]] = [(root, path, False)]
        while stack:
            node, chain, children_done = stack.pop()
            key = id(node)
            if children_done:
                on_path.discard(key)
                self._measure(node)
                if isinstance(node, yaml.MappingNode):
                    self._find_repeated_keys(node, chain)
                continue
            if key in measures:
                continue
            if key in on_path:
                raise _yaml_error(node, "recursive alias")
            self._check_tag(node)
            on_path.add(key)
            stack.append((node, chain, True))
            # Scalars (most nodes) are measured at once; containers wait for their children.
            for child, label in _labelled_children(node):
                if id(child) in measures:
                    continue
                if isinstance(child, yaml.ScalarNode):
                    self._scalar(child)
                else:
                    stack.append((child, (chain, label), False))

    def _check_tag(self, node: yaml.Node) -> None:
        kind = _ALLOWED_TAGS.get(node.tag)
        if kind is None:
            raise _yaml_error(node, f"unsupported YAML type {node.tag!r}")
        if not isinstance(node, kind):
            raise _yaml_error(node, f"{node.tag!r} cannot be written on {_KINDS[type(node)]}")

    def _scalar(self, node: yaml.ScalarNode) -> None:
        self._check_tag(node)
        if "\x00" in node.value:  # written as "\0"
            raise _yaml_error(node, "the document contains a NUL character")
        self.measures[id(node)] = (len(node.value), 1, 0)  # a scalar adds no level, as in JSON

    def _measure(self, node: yaml.Node) -> None:
        max_text, max_nodes, max_depth = self.limits
        text, count, deepest = 0, 1, 0
        for child, _ in _labelled_children(node):
            child_text, child_count, child_depth = self.measures[id(child)]
            text += child_text
            count += child_count
            deepest = max(deepest, child_depth)
        if text > max_text:
            raise BadRequestError(
                f"the document expands to more than {max_text} characters of text (aliases)"
            )
        if count > max_nodes:
            raise BadRequestError(f"the document expands to more than {max_nodes} nodes (aliases)")
        if deepest + 1 > max_depth:
            raise BadRequestError(f"the document is nested deeper than {max_depth} levels")
        self.measures[id(node)] = (text, count, deepest + 1)

    def _find_repeated_keys(self, node: yaml.MappingNode, chain: _Chain) -> None:
        first: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # merged keys may be overridden: that is merging
                continue
            earlier = first.setdefault(key_node.value, (key_node, value_node))
            if earlier[0] is key_node:
                continue
            self.duplicates.found(
                key_node.value,
                (chain, key_node.value),
                same=self._same(earlier[1], value_node),
                lines=(_line(earlier[0]), _line(key_node)),
            )

    def _same(self, left: yaml.Node, right: yaml.Node) -> bool:
        """The two nodes hold the same data, written the same way (tags and text)."""
        pairs = [(left, right)]
        while pairs:
            a, b = pairs.pop()
            if a is b:
                continue
            self.comparisons_left -= 1
            if self.comparisons_left < 0:
                raise BadRequestError("the document repeats too many keys to compare their values")
            if type(a) is not type(b) or a.tag != b.tag or len(a.value) != len(b.value):
                return False
            if isinstance(a, yaml.ScalarNode):
                if a.value != b.value:
                    return False
                continue
            pairs.extend(zip(_node_items(a), _node_items(b), strict=True))
        return True


def _node_items(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return list(node.value)


def _labelled_children(node: yaml.Node) -> list[tuple[yaml.Node, str | int]]:
    """A container's children, each with its key or index; keys must be scalars."""
    if isinstance(node, yaml.SequenceNode):
        return list(zip(node.value, range(len(node.value)), strict=True))
    children: list[tuple[yaml.Node, str | int]] = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _yaml_error(key_node, "mapping keys must be scalars")
        children += ((key_node, key_node.value), (value_node, key_node.value))
    return children


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


# --- JSON ------------------------------------------------------------------------------------


def _refuse_constant(constant: str) -> Any:
    raise BadRequestError(f"{constant} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestError(f"the number {_excerpt(text)} is out of range (a 64-bit float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INTEGER_DIGITS:
        raise BadRequestError(_too_many_digits())
    return int(text)


def _check_json(value: Any, *, max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` containers, and text that is not Unicode
    (JSON can escape lone surrogates, which no UTF-8 encoder accepts); without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _require_unicode(item)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise BadRequestError(f"the document is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    _require_unicode(key)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _require_unicode(text: str) -> None:
    if "\x00" in text:  # JSON can escape it, but no text column stores it
        raise BadRequestError("the document contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError("the document contains text that is not valid Unicode") from None


def _same_json(left: Any, right: Any) -> bool:
    # Serialised, 1, 1.0 and true differ (Python's == says they are equal); key order does not.
    return left is right or json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


# --- duplicate keys --------------------------------------------------------------------------


class _Duplicates:
    """Keys written twice in one mapping: a conflict when the values differ (refused), a
    warning when they are the same. Only ``MAX_WARNINGS`` warnings are kept in detail, so that
    a document of repeated keys costs no more than its size."""

    def __init__(self) -> None:
        self.repeated: list[tuple[int, str, _Chain, str]] = []
        self.unlisted = 0
        # JSON objects are built before their parents: paths are known only at the end.
        self.json_conflict: tuple[dict[str, Any], str] | None = None
        self.json_repeated: list[tuple[dict[str, Any], str]] = []

    def found(
        self, key: str, where: _Chain, *, same: bool, lines: tuple[int, int] | None = None
    ) -> None:
        seen = f" (lines {lines[0]} and {lines[1]})" if lines else ""
        if not same:
            raise BadRequestError(
                f"duplicate key {_excerpt(key)} at {_render(where)}{seen} with different "
                "values: keep one"
            )
        if len(self.repeated) < MAX_WARNINGS:
            # In document order: YAML mappings are checked inner ones first.
            order = lines[1] if lines else len(self.repeated)
            self.repeated.append((order, key, where, seen))
        else:
            self.unlisted += 1

    def json_object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """``object_pairs_hook``: build the object, noting the keys it has more than once."""
        mapping = dict(pairs)
        if len(mapping) < len(pairs):
            first: dict[str, Any] = {}
            for key, value in pairs:
                if key not in first:
                    first[key] = value
                elif not _same_json(first[key], value):
                    self.json_conflict = self.json_conflict or (mapping, key)
                elif len(self.json_repeated) < MAX_WARNINGS:
                    self.json_repeated.append((mapping, key))
                else:
                    self.unlisted += 1
        return mapping

    def locate_json(self, document: Any, path: str) -> None:
        """Name the objects noted while parsing by their paths; refuse a conflict."""
        noted = [self.json_conflict] if self.json_conflict else self.json_repeated
        if not noted:
            return
        chains = _json_chains(document, {id(mapping) for mapping, _ in noted}, path)
        for mapping, key in noted:
            where = (chains[id(mapping)], key)
            self.found(key, where, same=self.json_conflict is None)

    def warnings(self) -> tuple[Problem, ...]:
        listed = [
            Problem(
                _render(where),
                f"duplicate key {_excerpt(key)}{lines} with the same value: one is ignored",
            )
            for _, key, where, lines in sorted(self.repeated, key=lambda item: item[0])
        ]
        if self.unlisted:
            listed.append(Problem("", f"{self.unlisted} more duplicate keys with the same value"))
        return tuple(listed)


def _json_chains(document: Any, wanted: set[int], path: str) -> dict[int, _Chain]:
    """The path of each wanted mapping (by identity) in a JSON document."""
    found: dict[int, _Chain] = {}
    stack: list[tuple[Any, _Chain]] = [(document, path)]
    while stack and len(found) < len(wanted):
        item, chain = stack.pop()
        if id(item) in wanted:
            found[id(item)] = chain
        if isinstance(item, dict):
            stack.extend((child, (chain, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (chain, index)) for index, child in enumerate(item))
    return found


# --- messages --------------------------------------------------------------------------------


def _too_many_digits() -> str:
    return f"an integer has more than {MAX_INTEGER_DIGITS} digits: quote it"


def _excerpt(text: str, limit: int = 40) -> str:
    """A value quoted in a message, shortened: the value itself may be megabytes."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"
