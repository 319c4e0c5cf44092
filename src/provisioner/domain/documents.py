"""Reading untrusted YAML and JSON documents into plain JSON-compatible data.

Descriptors arrive from CI pipelines and users, so the loaders refuse what could hurt the service:
alias bombs ("billion laughs") and recursive aliases are measured on the composed node graph
before anything is built, nesting is bounded (serialisers recurse), and only the JSON-compatible
YAML types are accepted. Timestamps stay the strings they were written as and mapping keys are
the text of their scalar, so a descriptor round-trips to JSON without loss.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from provisioner.errors import BadRequestError

MAX_DEPTH = 64
MAX_NODES = 2_000_000

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_ALLOWED_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "merge")
)


class _DescriptorLoader(_BaseLoader):  # type: ignore[misc]
    """Safe loader without implicit timestamps and with string keys."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise BadRequestError(f"mapping keys must be scalars (line {_line(key_node)})")
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def load_yaml(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document safely; raise ``BadRequestError`` for anything unusable."""
    loader = _DescriptorLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise BadRequestError("the document is empty")
        _check_node_graph(node, max_nodes=max_nodes, max_depth=max_depth)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise BadRequestError(f"malformed YAML: {_describe(exc)}") from None
    finally:
        loader.dispose()


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document; refuse malformed text and excessive nesting."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"malformed JSON: {exc}") from None
    _check_json(value, max_depth=max_depth)
    return value


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


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _check_node_graph(root: yaml.Node, *, max_nodes: int, max_depth: int) -> None:
    """Measure the document as it would be once aliases are expanded.

    Aliases make the composed graph a DAG (or a cycle, for a recursive alias); the expanded
    size and depth are computed once per distinct node, so a billion-laughs document costs
    as little to refuse as it takes to read.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            # Depth counts containers, as for JSON: a scalar adds no level.
            level = 0 if isinstance(node, yaml.ScalarNode) else 1
            depth[key] = level + max((depth[id(child)] for child in children), default=0)
            if size[key] > max_nodes:
                raise BadRequestError(
                    f"the document expands to more than {max_nodes} nodes (aliases)"
                )
            if depth[key] > max_depth:
                raise BadRequestError(f"the document is nested deeper than {max_depth} levels")
            continue
        if key in size:
            continue
        if key in on_path:
            raise BadRequestError(f"recursive alias (line {_line(node)})")
        if node.tag not in _ALLOWED_TAGS:
            raise BadRequestError(f"unsupported YAML type {node.tag!r} (line {_line(node)})")
        if isinstance(node, yaml.ScalarNode) and "\x00" in node.value:  # written as "\0"
            raise BadRequestError(f"the document contains a NUL character (line {_line(node)})")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []
