"""Typed request values: ids held to the descriptor's rules wherever they enter, and booleans
that are booleans.

An id (of a unit, a component or an environment) that the descriptor would refuse is refused
in a request body, a query parameter and a path segment too, so that nothing is stored, or
looked for, under a name that could not be deployed or reached again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from provisioner.domain.descriptor import ID_RULE, MAX_ID_LENGTH, identifier_problem


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

Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH, description=ID_RULE), CheckedId
]
IdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, description=ID_RULE), CheckedId
]
IdQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, description=ID_RULE), CheckedId
]
