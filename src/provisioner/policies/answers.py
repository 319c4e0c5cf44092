"""Reading rego-cpp's answers through regopy's low-level calls.

regopy's ``Output`` parses every answer as JSON, and fails (losing the message) on the error
answers of an evaluation that went wrong; its ``Node`` wrapper asserts on shapes. So answers
are read here from the C API: the JSON text when it is JSON, else the nodes (rego-cpp leaves
quotes unescaped in the text of a ``sprintf`` of a ``concat``, and holds some strings in their
quoted form).
"""

from __future__ import annotations

import json
from typing import Any

import regopy
from regopy import rego_shared

from provisioner.errors import PolicyError


def query_result(interpreter: Any, bundle: Any) -> Any:
    """The value bound to the query's ``result``, or ``PolicyError`` with the engine's message."""
    output = rego_shared.rego_bundle_query(interpreter._impl, bundle._impl)
    try:
        if not rego_shared.rego_output_ok(output):
            messages = error_messages(rego_shared.rego_output_node(output))
            raise PolicyError(
                "a policy failed: " + ("; ".join(dict.fromkeys(messages)) or "evaluation error")
            )
        text = str(rego_shared.rego_output_string(output))
        if text == "undefined":
            return {}
        if text.startswith("("):  # an error the engine reports as an ok answer
            raise PolicyError("a policy failed: " + _error_text(text))
        try:
            answer = json.loads(text)
        except ValueError:
            return _bound_result(rego_shared.rego_output_node(output))
    finally:
        rego_shared.rego_free_output(output)
    first = answer[0] if isinstance(answer, list) and answer else answer
    bindings = first.get("bindings", {}) if isinstance(first, dict) else {}
    return bindings.get("result", {})


def _bound_result(root: Any) -> Any:
    """The value of the binding named ``result`` under an answer's root node."""
    stack = [root]
    while stack:
        node = stack.pop()
        children = _children(node)
        if (
            rego_shared.rego_node_type(node) == regopy.NodeKind.Binding
            and len(children) == 2
            and rego_shared.rego_node_value(children[0]) == "result"
        ):
            return _value(children[1])
        stack.extend(reversed(children))
    return {}


def _value(node: Any) -> Any:
    kind = rego_shared.rego_node_type(node)
    children = _children(node)
    if kind in (regopy.NodeKind.Term, regopy.NodeKind.Scalar) and len(children) == 1:
        return _value(children[0])
    if kind == regopy.NodeKind.Object:
        items = [_children(item) for item in children]
        return {str(_value(key)): _value(value) for key, value in items}
    if kind in (regopy.NodeKind.Array, regopy.NodeKind.Set):
        return [_value(child) for child in children]
    text = str(rego_shared.rego_node_value(node))
    if kind == regopy.NodeKind.String:
        return _string(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error_text(report: str) -> str:
    marker = "(errormsg "
    start = report.find(marker)
    if start < 0:
        return report[:500]
    length, _, rest = report[start + len(marker) :].partition(":")
    return rest[: int(length)] if length.isdigit() else rest[:500]


def error_messages(node: Any) -> list[str]:
    """The texts of the ErrorMessage nodes under a node of rego-cpp's low-level API."""
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        kind = rego_shared.rego_node_type(current)
        if kind == regopy.NodeKind.ErrorMessage:
            found.append(str(rego_shared.rego_node_value(current)))
            continue
        stack.extend(reversed(_children(current)))
    return found


def _string(text: str) -> str:
    """A string node's text is the content of a JSON string (escapes and all), sometimes with
    its quotes; text that is neither (a quote left raw) is taken as it is."""
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    try:
        value = json.loads(f'"{inner}"')
    except ValueError:
        return inner
    return value if isinstance(value, str) else inner


def _children(node: Any) -> list[Any]:
    return [rego_shared.rego_node_get(node, i) for i in range(rego_shared.rego_node_size(node))]
