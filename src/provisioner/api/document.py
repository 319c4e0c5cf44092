"""The OpenAPI document as the service publishes it: what FastAPI generates, completed so that
it tells the truth about every answer (checked against the running service by the contract
test, ``tests/contract``).

- Every answer a route can give is documented: ``400`` on every route (the request limits
  refuse a NUL character in any path or query before routing), ``413`` and ``415`` on every
  route that reads a body, each 4xx/5xx with the problem details schema.
- An optional parameter is absent or a value, never ``null``: a query string or a header has
  no null, so the document does not offer one.
- No request body may hold a NUL character, in a string or a key (``domain.documents``
  refuses it: no text column stores one): every string of a request body's schema without a
  pattern of its own gets one that says so, and free-form objects (a reverse provisioning's
  ``params``, a descriptor) are objects of such values (``JsonValue``).
- Links say where the answer to a request leads (an accepted operation to its status, its
  events, cancel and retry; a deploy to its release), so that clients, and schemathesis's
  stateful phase, can follow them.
"""

from __future__ import annotations

from typing import Any

from provisioner.api.problems import problem_documents

# Answers every route may give, with why; added where a route does not document them itself.
_EVERY_ROUTE = {
    "400": "Malformed request: a NUL character in the path or the query, or a body that "
    "cannot be read (malformed JSON or YAML, a key repeated with another value, a number JSON "
    "cannot hold)",
}
_ROUTES_WITH_A_BODY = {
    "413": "Request body too large (PROVISIONER_MAX_BODY_BYTES)",
    "415": "Unsupported media type: send application/json (or, where documented, YAML)",
}
_OPERATION = {"operation_id": "$response.body#/id"}
# From an answer that is an operation, to what can be done with it; keyed by the FastAPI
# function name of the target route.
_OPERATION_LINKS = {
    "GetOperation": ("get_operation", _OPERATION),
    "ListEvents": ("list_events", _OPERATION),
    "CancelOperation": ("cancel_operation", _OPERATION),
    "RetryOperation": ("retry_operation", _OPERATION),
}
_RELEASE = {
    "deployment_unit_id": "$response.body#/deploymentUnitId",
    "environment": "$response.body#/environment",
}
_RELEASE_LINKS = {
    "GetRelease": ("get_release", _RELEASE),
    "ListPublications": ("list_publications", _RELEASE),
}
# The routes whose answer (202, or 201 for an override) is an operation, and their links.
_LINKED = {
    "deploy": _OPERATION_LINKS | _RELEASE_LINKS,
    "undeploy": _OPERATION_LINKS | _RELEASE_LINKS,
    "retry_operation": _OPERATION_LINKS,
    "cancel_operation": {"GetOperation": _OPERATION_LINKS["GetOperation"]},
    "update_acl": _OPERATION_LINKS | _RELEASE_LINKS,
    "override_status": {"GetOperation": _OPERATION_LINKS["GetOperation"]} | _RELEASE_LINKS,
}


NO_NUL = "^[^\\x00]*$"
_JSON_VALUE_REF = "#/components/schemas/JsonValue"
# Any JSON value a request body may hold: NUL-free strings and keys, at any depth.
_JSON_VALUE = {
    "description": "any JSON value without a NUL character in a string or a key",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": _JSON_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": _JSON_VALUE_REF},
        },
    ],
}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """The published document: ``schema`` (FastAPI's) with every answer documented."""
    operation_ids = _operation_ids(schema)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _request_schemas(schema):
        _without_nul(components[name])
    components["JsonValue"] = _JSON_VALUE
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            _document_answers(operation)
            for content in operation.get("requestBody", {}).get("content", {}).values():
                _without_nul(content.get("schema", {}))
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _not_null(parameter.get("schema", {}))
            _link(operation, operation_ids)
    return problem_documents(schema)


def _document_answers(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    answers = dict(_EVERY_ROUTE)
    if "requestBody" in operation:
        answers |= _ROUTES_WITH_A_BODY
    for code, description in answers.items():
        responses.setdefault(code, {"description": description})


def _request_schemas(schema: dict[str, Any]) -> set[str]:
    """The component schemas that request bodies refer to (directly: they are flat)."""
    prefix = "#/components/schemas/"
    return {
        content["schema"]["$ref"].removeprefix(prefix)
        for operations in schema.get("paths", {}).values()
        for operation in operations.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if str(content.get("schema", {}).get("$ref", "")).startswith(prefix)
    }


def _without_nul(schema: Any) -> None:
    """Say, in ``schema`` and what it holds, that no string and no key has a NUL."""
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds and "pattern" not in schema and "enum" not in schema:
        schema["pattern"] = NO_NUL
    free_form = schema.get("additionalProperties", True) is True and "properties" not in schema
    if "object" in kinds and free_form:
        schema["propertyNames"] = {"pattern": NO_NUL}
        schema["additionalProperties"] = {"$ref": _JSON_VALUE_REF}
    children = [schema.get("items"), schema.get("additionalProperties")]
    children.extend(schema.get("properties", {}).values())
    for key in ("anyOf", "oneOf", "allOf"):
        children.extend(schema.get(key, []))
    for child in children:
        _without_nul(child)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` (FastAPI's spelling of an optional parameter) as X, keeping the
    outer keys (title, description, a published pattern)."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    values = [branch for branch in branches if branch != {"type": "null"}]
    if len(values) != 1 or len(values) == len(branches):
        return schema
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**values[0], **outer}


def _operation_ids(schema: dict[str, Any]) -> dict[str, str]:
    """The operationId of each linked route, by the name of its function (FastAPI's
    operationId is the function's name, then the path and the method)."""
    functions = set(_LINKED) | {
        target for links in _LINKED.values() for target, _ in links.values()
    }
    found: dict[str, str] = {}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation_id = operation.get("operationId", "")
            for function in functions:
                if operation_id.startswith(f"{function}_v1_"):
                    found[function] = operation_id
    return found


def _link(operation: dict[str, Any], operation_ids: dict[str, str]) -> None:
    name = next(
        (
            function
            for function in _LINKED
            if operation_ids.get(function) == operation.get("operationId")
        ),
        None,
    )
    accepted = operation.get("responses", {}).get("202")
    if name is None or accepted is None:
        return
    accepted["links"] = {
        link: {"operationId": operation_ids[target], "parameters": dict(parameters)}
        for link, (target, parameters) in _LINKED[name].items()
        if target in operation_ids
    }
