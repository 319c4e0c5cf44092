"""Reading a deployment unit descriptor (``provisioner.domain.descriptor``): every structural
problem is collected with its path, and descriptors shaped like real Witboost ones (the
fixtures) read cleanly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from provisioner.domain.descriptor import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    identifier_problem,
    parse_descriptor,
)
from provisioner.domain.documents import load_yaml
from provisioner.errors import BadRequestError, Problem
from tests.fixtures import DESCRIPTORS, descriptor_files

UNIT_ID = "urn:dmb:dp:test:unit:0"


def component(component_id: Any = "urn:c:a", **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": component_id,
        "kind": "workload",
        "infrastructureTemplateId": "urn:t:0",
        "version": "1.0.0",
        "dependsOn": [],
    }
    item.update(fields)
    return item


def unit(*components: dict[str, Any], **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": UNIT_ID,
        "name": "unit",
        "version": "1.0.0",
        "environment": "development",
        "infrastructureTemplateId": "urn:t:system:0",
        "components": list(components),
    }
    document.update(fields)
    return document


def problems_of(document: object) -> dict[str, str]:
    return {problem.path: problem.message for problem in parse_descriptor(document).problems}


# --- descriptors shaped like real ones ----------------------------------------------------------

FILES = descriptor_files()


def fixture(name: str) -> Any:
    return load_yaml((DESCRIPTORS / name).read_text(encoding="utf-8")).value


def test_the_fixture_descriptors_are_present() -> None:
    """The descriptors the next test reads are there (so a renamed folder fails here instead
    of leaving the next test with nothing to check)."""
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_a_realistic_descriptor_parses_without_problems(path: Path) -> None:
    """Each descriptor (unwrapping ``dataProduct:`` of a COMPONENT_DESCRIPTOR) is valid."""
    document = load_yaml(path.read_text(encoding="utf-8")).value
    if "dataProduct" in document:
        document = document["dataProduct"]

    parsed = parse_descriptor(document)

    assert parsed.problems == ()
    assert parsed.unit.id == document["id"]
    assert [c.id for c in parsed.unit.components] == [item["id"] for item in document["components"]]


def test_a_component_descriptor_reads_its_dependencies() -> None:
    """The output port of a COMPONENT_DESCRIPTOR body depends on its storage, and the id to
    provision is one of the unit's components."""
    document = fixture("component-descriptor.outputport.bigquery.yaml")

    parsed = parse_descriptor(document["dataProduct"])

    by_id = {component.id: component for component in parsed.unit.components}
    port = by_id[document["componentIdToProvision"]]
    assert port.kind == "outputport"
    assert port.depends_on == ("urn:dmb:cmp:logistics:shipments:0:bigquery-dataset",)


def test_the_open_specification_s_quirks_are_read_as_written() -> None:
    """ownerGroup and devGroup written twice (with the same value), a component kind spelled
    ``outputPort``, a workload without ``dependsOn``: valid, and read as written."""
    name = "dataproduct.open-spec.retail-orders.yaml"
    text = (DESCRIPTORS / name).read_text(encoding="utf-8")
    assert text.count("\nownerGroup:") == text.count("\ndevGroup:") == 2  # the quirk is there

    parsed = parse_descriptor(fixture(name))

    assert parsed.problems == ()
    assert parsed.unit.document["ownerGroup"] == "retail-orders-owners_shop.example"
    assert parsed.unit.document["devGroup"] == "retail-orders-dev_shop.example"
    kinds = {
        component.id.rsplit(":", 1)[-1]: component.kind for component in parsed.unit.components
    }
    assert kinds == {
        "landing-files": "outputport",
        "orders-sql": "outputPort",
        "cleaning-job": "workload",
        "quality": "observability",
    }
    workload = next(c for c in parsed.unit.components if c.kind == "workload")
    assert workload.depends_on == ()


def test_newer_platform_fields_and_snapshot_versions_are_kept() -> None:
    """A snapshot version is read verbatim; projectKind and projectOwner, which provisioner
    does not interpret, stay in the document; timestamps stay the text they were written as."""
    document = fixture("component-descriptor.workload.airflow-dag.yaml")["dataProduct"]

    parsed = parse_descriptor(document)

    assert parsed.problems == ()
    assert parsed.unit.version == "0.2.0-SNAPSHOT-2"
    assert parsed.unit.document["projectKind"] == "system"
    assert parsed.unit.document["projectOwner"] == "user:lena.fischer_energy.example"
    port = fixture("component-descriptor.outputport.bigquery.yaml")["dataProduct"]["components"][1]
    assert port["creationDate"] == "2024-05-06T14:12:40.125Z"


# --- what is read ------------------------------------------------------------------------------


def test_the_interpreted_fields_are_read() -> None:
    """Unit and component fields land in the value objects, in descriptor order."""
    document = unit(
        component("urn:c:a"),
        component("urn:c:b", dependsOn=["urn:c:a"], version=None, kind="storage"),
    )

    parsed = parse_descriptor(document)

    assert parsed.problems == ()
    assert (parsed.unit.id, parsed.unit.name, parsed.unit.version) == (UNIT_ID, "unit", "1.0.0")
    assert parsed.unit.environment == "development"
    assert parsed.unit.infrastructure_template_id == "urn:t:system:0"
    first, second = parsed.unit.components
    assert (first.id, first.kind, first.version, first.position) == (
        "urn:c:a",
        "workload",
        "1.0.0",
        0,
    )
    assert (second.id, second.kind, second.version, second.position) == (
        "urn:c:b",
        "storage",
        None,
        1,
    )
    assert second.depends_on == ("urn:c:a",)
    assert second.infrastructure_template_id == "urn:t:0"


def test_the_document_is_kept_as_received() -> None:
    """Fields provisioner does not interpret stay in ``unit.document``, the very object given."""
    document = unit(component(), specific={"anything": [1, 2]})

    parsed = parse_descriptor(document)

    assert parsed.unit.document is document


def test_environment_and_unit_template_are_optional() -> None:
    """A unit without ``environment`` or ``infrastructureTemplateId`` has no problem."""
    document = unit(component())
    del document["environment"], document["infrastructureTemplateId"]

    parsed = parse_descriptor(document)

    assert parsed.problems == ()
    assert parsed.unit.environment is None
    assert parsed.unit.infrastructure_template_id is None


def test_an_empty_component_list_is_allowed() -> None:
    """``components: []`` is a unit with nothing but the system."""
    parsed = parse_descriptor(unit())

    assert parsed.problems == ()
    assert parsed.unit.components == ()


def test_repeated_depends_on_entries_are_read_once() -> None:
    """``dependsOn: [a, a]`` is one dependency."""
    parsed = parse_descriptor(
        unit(component("urn:c:a"), component("urn:c:b", dependsOn=["urn:c:a"] * 2))
    )

    assert parsed.unit.components[1].depends_on == ("urn:c:a",)


# --- the root ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "type_name"),
    [([], "a list"), ("id: x", "a string"), (None, "null"), (3, "a number"), (True, "a boolean")],
)
def test_a_root_that_is_not_a_mapping_raises_bad_request(document: object, type_name: str) -> None:
    """A document that is not a mapping cannot be read at all; the message names its type."""
    with pytest.raises(BadRequestError, match=f"must be a mapping, not {type_name}$"):
        parse_descriptor(document)


def test_the_path_prefix_is_a_parameter() -> None:
    """Problems are reported under the ``path`` given (e.g. ``body.descriptor``)."""
    parsed = parse_descriptor({"name": "x"}, path="body.descriptor")

    assert Problem("body.descriptor.id", "is required") in parsed.problems


# --- problems, each with its path -------------------------------------------------------------


def test_every_problem_is_collected_with_its_path() -> None:
    """One read lists all problems of the unit and of every component, not just the first."""
    document = {
        "id": 7,
        "version": 1.0,
        "components": [
            "not a mapping",
            {"id": "urn:c:a", "dependsOn": "urn:c:b"},
            component("urn:c:b", kind="", infrastructureTemplateId=None, version=2),
        ],
    }

    assert problems_of(document) == {
        "descriptor.id": "must be a non-empty string (quote numbers)",
        "descriptor.name": "is required",
        "descriptor.version": "must be a non-empty string (quote numbers)",
        "descriptor.components[0]": "must be a mapping",
        "descriptor.components[1].kind": "is required",
        "descriptor.components[1].infrastructureTemplateId": "is required",
        "descriptor.components[1].dependsOn": "must be a list of component ids",
        "descriptor.components[2].kind": "must be a non-empty string (quote numbers)",
        "descriptor.components[2].infrastructureTemplateId": "is required",
        "descriptor.components[2].version": "must be a non-empty string (quote numbers)",
    }


def test_components_are_required() -> None:
    """A unit without a ``components`` key is told an empty list would do."""
    document = unit()
    del document["components"]

    assert problems_of(document) == {
        "descriptor.components": "is required (an empty list is allowed)"
    }


def test_components_must_be_a_list() -> None:
    """A mapping of components is refused."""
    assert problems_of(unit(components={"a": component()})) == {
        "descriptor.components": "must be a list"
    }


@pytest.mark.parametrize("version", [1, 1.0, True, "", "   "])
def test_the_unit_version_must_be_a_non_empty_string(version: object) -> None:
    """``version: 1.0`` (a YAML float) is refused: quote it."""
    assert problems_of(unit(component(), version=version)) == {
        "descriptor.version": "must be a non-empty string (quote numbers)"
    }


@pytest.mark.parametrize("version", [1, 1.0, False])
def test_a_component_version_must_be_a_string(version: object) -> None:
    """A component ``version`` that is not a string is refused with its path."""
    assert problems_of(unit(component(version=version))) == {
        "descriptor.components[0].version": "must be a non-empty string (quote numbers)"
    }


@pytest.mark.parametrize("depends_on", ["urn:c:a", {"urn:c:a": True}, 3])
def test_depends_on_must_be_a_list(depends_on: object) -> None:
    """A ``dependsOn`` that is not a list is refused as a whole."""
    assert problems_of(unit(component(dependsOn=depends_on))) == {
        "descriptor.components[0].dependsOn": "must be a list of component ids"
    }


def test_each_depends_on_entry_that_is_not_a_string_is_named_by_index() -> None:
    """Numbers, empty strings, nulls and mappings in ``dependsOn`` each get a problem."""
    document = unit(
        component("urn:c:a"),
        component("urn:c:b", dependsOn=["urn:c:a", 3, "", None, {"id": "urn:c:a"}]),
    )

    parsed = parse_descriptor(document)

    assert {problem.path for problem in parsed.problems} == {
        f"descriptor.components[1].dependsOn[{index}]" for index in (1, 2, 3, 4)
    }
    assert {problem.message for problem in parsed.problems} == {"must be a component id (a string)"}
    assert parsed.unit.components[1].depends_on == ("urn:c:a",)


def test_a_null_depends_on_means_no_dependencies() -> None:
    """``dependsOn: null`` (or absent) is an empty tuple, not a problem."""
    parsed = parse_descriptor(unit(component(dependsOn=None)))

    assert parsed.problems == ()
    assert parsed.unit.components[0].depends_on == ()


# --- ids ---------------------------------------------------------------------------------------

FORBIDDEN = "must not contain '/', white space, control, bidirectional or invisible characters"


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("urn:a/b", id="slash"),
        pytest.param("urn:a b", id="space"),
        pytest.param("urn:a\tb", id="tab"),
        pytest.param("urn:a\nb", id="newline"),
        pytest.param("urn:a\rb", id="carriage-return"),
        pytest.param("urn:a\u00a0b", id="no-break-space"),
        pytest.param("urn:a\u2028b", id="line-separator"),
        pytest.param("urn:a\x00b", id="nul"),
        pytest.param("urn:a\x1bb", id="escape"),
        pytest.param("urn:a\x7fb", id="delete"),
        pytest.param(" urn:a", id="leading-space"),
        *(
            pytest.param(f"urn:a{char}b", id=f"U+{ord(char):04X}")
            for char in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        ),
        *(
            pytest.param(f"urn:a{char}b", id=f"U+{ord(char):04X}")
            for char in "\u200b\u200c\u200d\u2060\ufeff"
        ),
    ],
)
def test_a_unit_id_with_forbidden_characters_is_refused(bad_id: str) -> None:
    """Ids travel in URL paths and log lines, and people read them: '/', white space, control
    characters, bidirectional controls (which reorder what is shown) and invisible characters
    (which make two ids look alike) are out."""
    assert problems_of(unit(component(), id=bad_id)) == {"descriptor.id": FORBIDDEN}


@pytest.mark.parametrize("bad_id", ["urn:a/b", "urn:a b", "urn:a\x00b"])
def test_a_component_id_with_forbidden_characters_is_refused(bad_id: str) -> None:
    """The same rule applies to component ids, and the component is not kept."""
    parsed = parse_descriptor(unit(component(bad_id)))

    assert parsed.problems == (Problem("descriptor.components[0].id", FORBIDDEN),)
    assert parsed.unit.components == ()


@pytest.mark.parametrize("control", ["\x80", "\x9b", "\x9f"])
def test_a_c1_control_character_in_an_id_is_refused(control: str) -> None:
    """C1 characters are control characters (Unicode category Cc) too."""
    assert "descriptor.id" in problems_of(unit(component(), id=f"urn:a{control}b"))


def test_an_id_of_the_maximum_length_is_accepted() -> None:
    """An id of exactly ``MAX_ID_LENGTH`` (512) characters is fine."""
    assert problems_of(unit(component("c" * MAX_ID_LENGTH))) == {}


def test_an_id_over_the_maximum_length_is_refused() -> None:
    """An id of 513 characters is refused, for the unit and for a component."""
    long_id = "c" * (MAX_ID_LENGTH + 1)

    assert problems_of(unit(component(long_id), id=long_id)) == {
        "descriptor.id": f"must be at most {MAX_ID_LENGTH} characters",
        "descriptor.components[0].id": f"must be at most {MAX_ID_LENGTH} characters",
    }


@pytest.mark.parametrize("bad_id", [None, "", "  ", 42])
def test_a_missing_or_non_string_component_id_is_refused(bad_id: object) -> None:
    """A component without a usable id is reported and not kept."""
    parsed = parse_descriptor(unit(component(bad_id)))

    assert [problem.path for problem in parsed.problems] == ["descriptor.components[0].id"]
    assert parsed.unit.components == ()


def test_ids_are_otherwise_opaque() -> None:
    """Unicode, colons, '#', quotes and YAML-significant text are all acceptable ids."""
    ids = ["urn:ü日本:0", "a#b", "'q'", "yes", "123", "a:b:c", "urn:dmb:cmp:x:y:0:z"]

    parsed = parse_descriptor(unit(*(component(item) for item in ids)))

    assert parsed.problems == ()
    assert [c.id for c in parsed.unit.components] == ids


def test_a_duplicate_component_id_is_refused_naming_the_first() -> None:
    """The second component with an id is reported with the index of the first, and dropped."""
    parsed = parse_descriptor(
        unit(component("urn:c:a"), component("urn:c:b"), component("urn:c:a", kind="other"))
    )

    assert parsed.problems == (
        Problem(
            "descriptor.components[2].id",
            "duplicate component id 'urn:c:a' (also components[0])",
        ),
    )
    assert [c.id for c in parsed.unit.components] == ["urn:c:a", "urn:c:b"]
    assert parsed.unit.components[0].kind == "workload"


def test_a_component_id_equal_to_the_unit_id_is_refused() -> None:
    """The unit id names the system step; no component may take it."""
    parsed = parse_descriptor(unit(component(UNIT_ID), component("urn:c:b")))

    assert parsed.problems == (
        Problem("descriptor.components[0].id", "must differ from the deployment unit id"),
    )
    assert [c.id for c in parsed.unit.components] == ["urn:c:b"]


def test_a_component_with_other_problems_is_kept_for_dependency_checks() -> None:
    """A component missing its kind still appears in the unit, with its position."""
    parsed = parse_descriptor(unit("x", component("urn:c:a", kind=None)))  # type: ignore[arg-type]

    assert [problem.path for problem in parsed.problems] == [
        "descriptor.components[0]",
        "descriptor.components[1].kind",
    ]
    assert [(item.id, item.position) for item in parsed.unit.components] == [("urn:c:a", 1)]


# --- the environment and dependsOn entries follow the rules of ids ----------------------------


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param("dev/x", id="slash"),
        pytest.param("dev\tx", id="tab"),
        pytest.param("dev\nx", id="newline"),
        pytest.param("dev\u202ex", id="right-to-left-override"),
        pytest.param("dev\u200bx", id="zero-width-space"),
    ],
)
def test_an_environment_is_held_to_the_rules_of_ids(environment: str) -> None:
    """The environment is a path segment of the API: a release in ``dev/x`` could never be
    read back, so the descriptor is refused."""
    parsed = parse_descriptor(unit(component(), environment=environment))

    assert parsed.problems == (Problem("descriptor.environment", FORBIDDEN),)
    assert parsed.unit.environment is None


def test_an_environment_over_the_id_length_is_refused() -> None:
    assert problems_of(unit(component(), environment="e" * (MAX_ID_LENGTH + 1))) == {
        "descriptor.environment": f"must be at most {MAX_ID_LENGTH} characters"
    }


def test_a_depends_on_entry_is_held_to_the_rules_of_ids() -> None:
    """A dependency on ``a\\u202eb`` is refused by index, and not kept as a dependency."""
    parsed = parse_descriptor(
        unit(
            component("urn:c:a"),
            component("urn:c:b", dependsOn=["urn:c:a", "urn:c:\u202ea", "urn:c:\ufeffa"]),
        )
    )

    assert {problem.path: problem.message for problem in parsed.problems} == {
        "descriptor.components[1].dependsOn[1]": FORBIDDEN,
        "descriptor.components[1].dependsOn[2]": FORBIDDEN,
    }
    assert parsed.unit.components[1].depends_on == ("urn:c:a",)


def test_repeated_depends_on_entries_keep_their_first_order() -> None:
    """De-duplication keeps each id where it first appears."""
    parsed = parse_descriptor(unit(component(dependsOn=["z", "a", "z", "m", "a"])))

    assert parsed.unit.components[0].depends_on == ("z", "a", "m")


def test_a_very_long_depends_on_list_is_read_in_linear_time() -> None:
    """200,000 entries (half of them repeats) are read at once: de-duplicating them by list
    search took 11 s for 40,000 on the event loop. No clock is read: a quadratic reading
    would run past the test timeout."""
    entries = [f"urn:c:{index % 100_000}" for index in range(200_000)]

    parsed = parse_descriptor(unit(component(dependsOn=entries)))

    assert len(parsed.unit.components[0].depends_on) == 100_000


def test_the_published_id_pattern_is_the_rule_of_ids() -> None:
    """``ID_PATTERN`` (what the OpenAPI document publishes) admits exactly the characters
    ``identifier_problem`` admits, for every code point."""
    pattern = re.compile(ID_PATTERN)
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates are not text (the loaders refuse them)
        candidate = f"a{chr(code)}b"
        published = pattern.fullmatch(candidate) is not None
        assert published is (identifier_problem(candidate) is None), hex(code)
