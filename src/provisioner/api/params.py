"""Typed request values: ids held to the descriptor's rules wherever they enter, and booleans
that are booleans.

An id (of a unit, a component or an environment) that the descriptor would refuse is refused
in a request body, a query parameter and a path segment too, so that nothing is stored, or
looked for, under a name that could not be deployed or reached again.

Each constraint is declared here once, where both the validation and the OpenAPI document
take it: the document says what the service refuses (schemathesis checks that it does).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from provisioner.domain.descriptor import ID_PATTERN, ID_RULE, MAX_ID_LENGTH, identifier_problem


def _identifier(value: str | None) -> str | None:
    problem = None if value is None else identifier_problem(value)
    if problem is not None:
        raise PydanticCustomError("identifier", problem)
    return value


def _json_bool(value: Any) -> Any:
    # FastAPI would read yes/no, on/off and 1/0 as booleans; a flag is spelled as in JSON.
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise PydanticCustomError("bool_parsing", "must be true or false")


CheckedId = AfterValidator(_identifier)
"""Validator for an id (or None) in ``Annotated``, next to ``Query`` or ``Path``."""
JsonBool = BeforeValidator(_json_bool)
"""Validator for a boolean query parameter in ``Annotated``: only true and false."""

# The rule is enforced by ``CheckedId`` (whose message says what is wrong); the pattern is
# published so that the document forbids what the validator refuses.
_PUBLISHED_PATTERN: dict[str, Any] = {"pattern": ID_PATTERN}
_ID_BOUNDS: dict[str, Any] = {
    "min_length": 1,
    "max_length": MAX_ID_LENGTH,
    "description": ID_RULE,
    "json_schema_extra": _PUBLISHED_PATTERN,
}

ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": ID_PATTERN,
    "description": ID_RULE,
}
"""An id in a hand-written JSON Schema (the deploy body's envelope)."""

Identifier = Annotated[str, Field(**_ID_BOUNDS), CheckedId]
IdPath = Annotated[str, Path(**_ID_BOUNDS), CheckedId]
IdQuery = Annotated[str | None, Query(**_ID_BOUNDS), CheckedId]
UnitIdQuery = Annotated[str | None, Query(alias="deploymentUnitId", **_ID_BOUNDS), CheckedId]

OperationIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="an operation's `id` (the `Location` of the 202 that accepted it)",
        json_schema_extra=_PUBLISHED_PATTERN,
    ),
    CheckedId,
]
"""An operation id in a path: held to the rule of ids (none that breaks it was ever issued)."""

# What this service issues as ``nextCursor``: unpadded base64url. One that decodes to nothing
# this service issued is 400 (documented on each list).
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"
CursorQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        pattern=CURSOR_PATTERN,
        description="the `nextCursor` of the previous page (400 if this service did not issue it)",
    ),
]
