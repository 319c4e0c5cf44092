"""Descriptor texts for Tech Adapters (``provisioner.domain.rendering``): what is sent must read
back as the document it came from, and the shared part is serialised once."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from provisioner.domain.rendering import (
    ComponentDescriptorText,
    DescriptorTexts,
    ProvisioningRecord,
    SharedText,
    WireText,
    enrich_descriptor,
    to_yaml,
)
from provisioner.domain.status import OperationType, TaskStatus


def json_encoded(text: WireText) -> str:
    """The whole JSON string encoding that requests send in parts."""
    return b"".join(text.json_parts()).decode()


# Strings a naive YAML writer would mangle: YAML keywords and numbers, indicators, quotes,
# line breaks of every kind (YAML 1.1 also breaks lines on NEL, LS and PS), non-ASCII text.
AWKWARD = [
    "yes",
    "no",
    "on",
    "off",
    "123",
    "1.0",
    "0x1F",
    "1e3",
    "null",
    "~",
    "true",
    "2020-01-01",
    "a: b",
    "- x",
    "#x",
    "x #y",
    "'q'",
    '"dq"',
    "@at",
    "`bt",
    "%p",
    "&a",
    "*a",
    "!t",
    "|",
    ">",
    "{a}",
    "[a]",
    "a,b",
    "---",
    "...",
    "<<",
    "\\back\\slash",
    "urn:dmb:cmp:healthcare:vaccinations:0:storage",
    "ü日本",
    "😀 emoji",
    " leading",
    "trailing ",
    "tab\tinside",
    "a\nb",
    "multi\nline\n",
    "trailing blank lines\n\n\n",
    "  indented\n    more\n",
    "crlf\r\nline",
    "nel\x85line",
    "ls\u2028line",
    "ps\u2029line",
    "bom\ufeffinside",
    "bell\x07 del\x7f",
    "c1\x9bcontrol",
    "",
    "x" * 5000,
    "word " * 1200,
]


def unit_document(**extra: Any) -> dict[str, Any]:
    return {
        "id": "urn:dmb:dp:test:rendering:0",
        "name": "Rendering ü",
        "version": "1.0.0",
        "description": "line one\nline two\n  indented\n",
        "tags": AWKWARD,
        "specific": {"on": "2020-01-01", "200": None, "nested": [{"a": 1.5}, [True, False]]},
        "components": [{"id": "urn:c:a", "kind": "workload", "dependsOn": []}],
        **extra,
    }


# --- COMPONENT_DESCRIPTOR ----------------------------------------------------------------------


@pytest.mark.parametrize("component_id", AWKWARD, ids=repr)
def test_a_component_descriptor_reads_back_as_unit_and_id(component_id: str) -> None:
    """``yaml.safe_load`` of the text is ``{dataProduct: <unit>, componentIdToProvision: id}``."""
    document = unit_document()

    text = DescriptorTexts(document).component(component_id).text

    assert yaml.safe_load(text) == {"dataProduct": document, "componentIdToProvision": component_id}


@pytest.mark.parametrize("component_id", AWKWARD, ids=repr)
def test_the_json_encoding_of_a_component_descriptor_is_exact(component_id: str) -> None:
    """The parts joined are exactly ``json.dumps`` of the text (UTF-8 kept as is)."""
    descriptor = DescriptorTexts(unit_document()).component(component_id)

    encoded = json_encoded(descriptor)

    assert encoded == json.dumps(descriptor.text, ensure_ascii=False)
    assert json.loads(encoded) == descriptor.text


def test_the_component_line_comes_after_the_unit() -> None:
    """The text is the ``dataProduct:`` block followed by ``componentIdToProvision``."""
    descriptor = DescriptorTexts({"id": "urn:u", "name": "u"}).component("urn:c:a")

    assert (
        descriptor.text
        == 'dataProduct:\n  id: urn:u\n  name: u\ncomponentIdToProvision: "urn:c:a"\n'
    )


def test_the_unit_block_is_shared_by_every_component() -> None:
    """All components of one unit reuse the same head object, encoded once."""
    texts = DescriptorTexts(unit_document())

    first, second = texts.component("urn:c:a"), texts.component("urn:c:b")

    assert first.head is second.head
    assert first.json_parts()[0] is second.json_parts()[0]
    assert first.tail != second.tail


def test_prepare_serialises_the_component_head_ahead_of_use() -> None:
    """``prepare(system=False)`` builds the component head then, not at first use."""
    document = unit_document()
    texts = DescriptorTexts(document)
    texts.prepare(system=False)

    document["name"] = "changed after prepare"

    assert yaml.safe_load(texts.component("urn:c:a").text)["dataProduct"]["name"] == "Rendering ü"


def test_prepare_for_the_system_serialises_the_unit_ahead_of_use() -> None:
    """``prepare(system=True)`` builds the DATAPRODUCT_DESCRIPTOR text then."""
    document = unit_document()
    texts = DescriptorTexts(document)
    texts.prepare(system=True)

    document["name"] = "changed after prepare"

    assert yaml.safe_load(texts.unit.text)["name"] == "Rendering ü"


def test_the_document_is_not_reread_after_first_use() -> None:
    """The texts are built once: a later change to the document does not show in them."""
    document = unit_document()
    texts = DescriptorTexts(document)
    before = texts.component("urn:c:a").text

    document["name"] = "changed"

    assert texts.component("urn:c:b").text.replace("urn:c:b", "urn:c:a") == before


# --- dependency info in COMPONENT_DESCRIPTORs --------------------------------------------------


def chain_document() -> dict[str, Any]:
    """A unit whose components carry awkward text, ``port`` depending on ``store`` and ``job``."""
    return unit_document(
        components=[
            {"id": "urn:c:store", "kind": "storage", "dependsOn": [], "notes": list(AWKWARD)},
            {"id": "urn:c:job", "kind": "workload", "dependsOn": [], "info": {"stale": 1}},
            {"id": "urn:c:port", "kind": "outputport", "dependsOn": ["urn:c:store", "urn:c:job"]},
            {"id": "urn:c:other", "kind": "workload", "dependsOn": []},
        ],
        after="a key after the components",
    )


INFO = {"publicInfo": {"table": "ü日本", "lines": "a\nb\n"}, "privateInfo": {"pw": "'\"s\u2028"}}


def with_info(document: dict[str, Any], infos: dict[str, Any]) -> dict[str, Any]:
    return {
        **document,
        "components": [
            {**c, "info": infos[c["id"]]} if c["id"] in infos else c for c in document["components"]
        ],
    }


@pytest.mark.parametrize("value", AWKWARD, ids=repr)
def test_a_dependent_is_sent_its_dependencies_with_their_info(value: str) -> None:
    """The text reads back as the unit with ``info`` on the dependencies' entries only (an
    ``info`` the descriptor wrote is replaced), and is what dumping that unit whole writes."""
    document = chain_document()
    infos = {"urn:c:store": {**copy.deepcopy(INFO), "extra": value}, "urn:c:job": INFO}

    descriptor = DescriptorTexts(document).component("urn:c:port", infos)

    enriched = with_info(document, infos)
    expected = {"dataProduct": enriched, "componentIdToProvision": "urn:c:port"}
    assert yaml.safe_load(descriptor.text) == expected
    assert descriptor.text.startswith(to_yaml({"dataProduct": enriched}))
    assert json_encoded(descriptor) == json.dumps(descriptor.text, ensure_ascii=False)


def test_a_dependent_text_is_spliced_from_the_shared_encoding() -> None:
    """Only the dependencies' entries are new bytes: the rest are slices of the encoding
    shared by every component, and one set of dependencies is built once."""
    texts = DescriptorTexts(chain_document())
    shared = texts.component("urn:c:other").json_parts()[0]

    first = texts.component("urn:c:port", {"urn:c:store": INFO, "urn:c:job": INFO})
    again = texts.component("urn:c:port", {"urn:c:job": INFO, "urn:c:store": INFO})

    slices = [part for part in first.json_parts() if isinstance(part, memoryview)]
    assert len(slices) == 3
    assert all(part.obj is shared for part in slices)
    assert again.json_parts()[0].obj is shared  # type: ignore[union-attr]
    assert getattr(first, "head", None) is getattr(again, "head", None)


def test_dependencies_the_descriptor_does_not_list_change_nothing() -> None:
    """Info for an id that is not a component of the unit is not sent."""
    texts = DescriptorTexts(chain_document())

    descriptor = texts.component("urn:c:port", {"urn:c:elsewhere": INFO})

    assert descriptor.text == texts.component("urn:c:port").text


def test_a_unit_whose_entries_share_yaml_anchors_is_dumped_whole() -> None:
    """When entries dumped alone differ from the whole text (an object shared between
    components is written with an anchor), the dependent's text is dumped whole, correctly."""
    shared = {"owner": "team", "list": [1, 2]}
    document = chain_document()
    document["components"][0]["specific"] = shared
    document["components"][2]["specific"] = shared

    descriptor = DescriptorTexts(document).component("urn:c:port", {"urn:c:store": INFO})

    expected = {
        "dataProduct": with_info(document, {"urn:c:store": INFO}),
        "componentIdToProvision": "urn:c:port",
    }
    assert "&id" in descriptor.text
    assert yaml.safe_load(descriptor.text) == expected
    assert json_encoded(descriptor) == json.dumps(descriptor.text, ensure_ascii=False)


# --- DATAPRODUCT_DESCRIPTOR --------------------------------------------------------------------


def test_the_unit_descriptor_reads_back_as_the_document() -> None:
    """``unit.text`` is the bare descriptor, with no ``dataProduct`` wrapper."""
    document = unit_document()

    unit = DescriptorTexts(document).unit

    assert yaml.safe_load(unit.text) == document
    assert json_encoded(unit) == json.dumps(unit.text, ensure_ascii=False)


def test_the_unit_text_is_built_once() -> None:
    """``unit`` is one SharedText per DescriptorTexts."""
    texts = DescriptorTexts(unit_document())

    assert texts.unit is texts.unit


def test_to_yaml_keeps_key_order_and_unicode() -> None:
    """Keys are not sorted and non-ASCII text is written as is, not escaped."""
    text = to_yaml({"z": 1, "a": "ü日本"})

    assert text == "z: 1\na: ü日本\n"


def test_shared_text_encodes_lazily_and_once() -> None:
    """The JSON encoding is the same object on every call."""
    shared = SharedText('a "quoted"\nline')

    assert json_encoded(shared) == '"a \\"quoted\\"\\nline"'
    assert shared.json_parts()[0] is shared.json_parts()[0]


def test_component_text_joins_head_and_tail() -> None:
    """A ComponentDescriptorText is its head's text then its tail, encoded as one string."""
    descriptor = ComponentDescriptorText(head=SharedText('h"\n'), tail="t\u2028\\")

    assert descriptor.text == 'h"\nt\u2028\\'
    assert json_encoded(descriptor) == json.dumps('h"\nt\u2028\\', ensure_ascii=False)


# --- enrich_descriptor -------------------------------------------------------------------------


def record(
    public: dict[str, Any] | None = None,
    private: dict[str, Any] | None = None,
    operation: OperationType | None = OperationType.DEPLOY,
    status: TaskStatus | None = TaskStatus.SUCCEEDED,
) -> ProvisioningRecord:
    return ProvisioningRecord(
        public_info=public, private_info=private, operation=operation, status=status
    )


def two_component_document() -> dict[str, Any]:
    return {
        "id": "urn:u",
        "name": "u",
        "components": [
            {"id": "urn:c:a", "kind": "storage", "specific": {"x": [1]}},
            {"id": "urn:c:b", "kind": "workload"},
        ],
    }


def test_enrichment_adds_info_to_the_unit_and_to_recorded_components() -> None:
    """``info`` holds publicInfo, privateInfo and latestProvisioningOperation."""
    document = two_component_document()

    enriched = enrich_descriptor(
        document,
        {
            "urn:u": record({"p": 1}, {"s": 2}),
            "urn:c:a": record({"table": "t"}, None, OperationType.UNDEPLOY, TaskStatus.FAILED),
        },
    )

    assert enriched["info"] == {
        "publicInfo": {"p": 1},
        "privateInfo": {"s": 2},
        "latestProvisioningOperation": {"operation": "Deploy", "status": "Successful"},
    }
    assert enriched["components"][0] == {
        "id": "urn:c:a",
        "kind": "storage",
        "specific": {"x": [1]},
        "info": {
            "publicInfo": {"table": "t"},
            "privateInfo": {},
            "latestProvisioningOperation": {"operation": "Undeploy", "status": "Failed"},
        },
    }
    assert "info" not in enriched["components"][1]


def test_enrichment_does_not_modify_its_input() -> None:
    """The document and its components are left exactly as they were."""
    document = two_component_document()
    before = copy.deepcopy(document)

    enrich_descriptor(document, {"urn:u": record(), "urn:c:a": record(), "urn:c:b": record()})

    assert document == before


def test_enrichment_copies_the_recorded_infos() -> None:
    """Changing the enriched info later does not reach the record it came from."""
    public = {"p": 1}
    enriched = enrich_descriptor(two_component_document(), {"urn:c:a": record(public)})

    enriched["components"][0]["info"]["publicInfo"]["p"] = 2

    assert public == {"p": 1}


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (TaskStatus.SUCCEEDED, "Successful"),
        (TaskStatus.FAILED, "Failed"),
        (TaskStatus.CANCELLED, "Failed"),
        (TaskStatus.RUNNING, "Running"),
        (TaskStatus.WAITING, "NotStarted"),
        (TaskStatus.SKIPPED, "NotStarted"),
    ],
)
def test_task_statuses_map_to_witboost_operation_statuses(status: TaskStatus, name: str) -> None:
    """Each task status has its Witboost ``latestProvisioningOperation.status`` name."""
    enriched = enrich_descriptor({"id": "urn:u"}, {"urn:u": record(status=status)})

    assert enriched["info"]["latestProvisioningOperation"]["status"] == name


def test_a_record_without_an_operation_has_no_latest_operation() -> None:
    """Without operation or status, ``info`` has only the two info objects."""
    enriched = enrich_descriptor({"id": "urn:u"}, {"urn:u": record(operation=None, status=None)})

    assert enriched["info"] == {"publicInfo": {}, "privateInfo": {}}


def test_enrichment_leaves_unusual_shapes_alone() -> None:
    """Non-mapping components and a non-list ``components`` pass through unchanged."""
    odd = enrich_descriptor({"id": "urn:u", "components": ["x", {"no": "id"}]}, {"urn:c": record()})
    not_a_list = enrich_descriptor({"id": "urn:u", "components": "x"}, {"urn:u": record()})

    assert odd["components"] == ["x", {"no": "id"}]
    assert not_a_list["components"] == "x"
