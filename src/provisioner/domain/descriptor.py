"""The deployment unit descriptor: the fields provisioner uses, read from untrusted data.

Only ``id``, ``name``, ``version``, ``environment``, ``infrastructureTemplateId`` and, per
component, ``id``, ``kind``, ``infrastructureTemplateId``, ``dependsOn`` and ``version`` are
interpreted. The whole document is kept as it came and handed to Tech Adapters untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import BadRequestError, Problem

MAX_ID_LENGTH = 512
# Ids are opaque, but they travel in URL path segments and log lines, and people read them:
# no '/', white space, control characters (C0, C1), bidirectional controls (which reorder what
# is displayed: U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) or invisible characters
# (U+200B-U+200D, U+2060-U+2064, U+FEFF), which make two different ids look the same.
# Spelled out (no ``\s``) so that the same class means the same in Python and in the API's
# JSON Schema (ECMA-262 regular expressions), where ``ID_PATTERN`` publishes it.
ID_FORBIDDEN_CHARACTERS = (
    r"/\x00-\x20\x7f-\xa0"  # '/', C0 controls, space, DEL, C1 controls, no-break space
    r"\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # the other Unicode spaces
    r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional controls
    r"\u200b-\u200d\u2060-\u2064\ufeff"  # invisible characters
)
_ID_FORBIDDEN = re.compile(f"[{ID_FORBIDDEN_CHARACTERS}]")
ID_PATTERN = f"^[^{ID_FORBIDDEN_CHARACTERS}]+$"
"""An id as a JSON Schema ``pattern`` (its length is bounded apart: 1 to ``MAX_ID_LENGTH``)."""
ID_RULE = (
    f"1 to {MAX_ID_LENGTH} characters, without '/', white space, control, bidirectional or "
    "invisible characters"
)


def identifier_problem(value: object) -> str | None:
    """Why ``value`` cannot be an id (of a unit, a component or an environment), or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if _ID_FORBIDDEN.search(value):
        return "must not contain '/', white space, control, bidirectional or invisible characters"
    return None


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a deployment unit, as provisioner reads it."""

    id: str
    kind: str
    infrastructure_template_id: str
    depends_on: tuple[str, ...]
    version: str | None
    position: int  # index in the descriptor's ``components`` list, for error paths


@dataclass(frozen=True, slots=True)
class DeploymentUnit:
    """A deployment unit (data product) and its components.

    ``document`` is the descriptor exactly as received (JSON-compatible data); treat it as
    read-only.
    """

    id: str
    name: str
    version: str
    environment: str | None
    infrastructure_template_id: str | None
    components: tuple[Component, ...]
    document: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedDescriptor:
    """A descriptor read as far as possible, with every structural problem found."""

    unit: DeploymentUnit
    problems: tuple[Problem, ...]


class _Reader:
    """Collects problems while reading fields, so that all of them are reported at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def text(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool,
        max_length: int | None = None,
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(f"{path}.{key}", "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{path}.{key}", "must be a non-empty string (quote numbers)")
            return None
        if max_length is not None and len(value) > max_length:
            self.problem(f"{path}.{key}", f"must be at most {max_length} characters")
            return None
        return value

    def identifier(
        self, data: Mapping[str, Any], key: str, path: str, *, required: bool = True
    ) -> str | None:
        value = self.text(data, key, path, required=required)
        if value is None:
            return None
        problem = identifier_problem(value)
        if problem is not None:
            self.problem(f"{path}.{key}", problem)
            return None
        return value

    def id_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(f"{path}.{key}", "must be a list of component ids")
            return ()
        ids: dict[str, None] = {}  # ordered, and repeated entries are read once in O(1)
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.problem(f"{path}.{key}[{index}]", "must be a component id (a string)")
            elif (problem := identifier_problem(item)) is not None:
                self.problem(f"{path}.{key}[{index}]", problem)
            else:
                ids[item] = None
        return tuple(ids)


def parse_descriptor(document: object, *, path: str = "descriptor") -> ParsedDescriptor:
    """Read a deployment unit from a loaded document.

    Raises ``BadRequestError`` when the document is not a mapping at all; every other problem
    (missing or mistyped fields, duplicate component ids) is returned in ``problems``, and the
    unit holds the components that could be read.
    """
    if not isinstance(document, dict):
        raise BadRequestError(f"the {path} must be a mapping, not {_type_name(document)}")
    reader = _Reader()
    unit_id = reader.identifier(document, "id", path) or ""
    name = reader.text(document, "name", path, required=True) or ""
    # Fields that are stored are held to the database's column size.
    version = reader.text(document, "version", path, required=True, max_length=MAX_ID_LENGTH)
    # The environment is a path segment of the API too: it is held to the rules of ids.
    environment = reader.identifier(document, "environment", path, required=False)
    template = reader.text(
        document, "infrastructureTemplateId", path, required=False, max_length=MAX_ID_LENGTH
    )
    components = _read_components(reader, document, path, unit_id)
    unit = DeploymentUnit(
        id=unit_id,
        name=name,
        version=version or "",
        environment=environment,
        infrastructure_template_id=template,
        components=tuple(components),
        document=document,
    )
    return ParsedDescriptor(unit=unit, problems=tuple(reader.problems))


def _read_components(
    reader: _Reader, document: Mapping[str, Any], path: str, unit_id: str
) -> list[Component]:
    raw = document.get("components")
    if raw is None:
        reader.problem(f"{path}.components", "is required (an empty list is allowed)")
        return []
    if not isinstance(raw, list):
        reader.problem(f"{path}.components", "must be a list")
        return []
    components: list[Component] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        item_path = f"{path}.components[{index}]"
        if not isinstance(item, dict):
            reader.problem(item_path, "must be a mapping")
            continue
        component = _read_component(reader, item, item_path, index)
        if component is None:
            continue
        if component.id == unit_id:
            reader.problem(f"{item_path}.id", "must differ from the deployment unit id")
        elif component.id in seen:
            reader.problem(
                f"{item_path}.id",
                f"duplicate component id {component.id!r} (also components[{seen[component.id]}])",
            )
        else:
            seen[component.id] = index
            components.append(component)
    return components


def _read_component(
    reader: _Reader, item: Mapping[str, Any], path: str, position: int
) -> Component | None:
    component_id = reader.identifier(item, "id", path)
    kind = reader.text(item, "kind", path, required=True)
    template = reader.text(
        item, "infrastructureTemplateId", path, required=True, max_length=MAX_ID_LENGTH
    )
    version = reader.text(item, "version", path, required=False, max_length=MAX_ID_LENGTH)
    depends_on = reader.id_list(item, "dependsOn", path)
    if component_id is None:
        return None
    # A component with other problems is kept so that dependency checks still see its id;
    # its problems are already recorded and the descriptor will be refused.
    return Component(
        id=component_id,
        kind=kind or "",
        infrastructure_template_id=template or "",
        depends_on=depends_on,
        version=version,
        position=position,
    )


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)
