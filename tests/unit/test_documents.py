"""Safe loading of untrusted YAML and JSON documents (``provisioner.domain.documents``)."""

from __future__ import annotations

import json

import pytest

from provisioner.domain.documents import MAX_DEPTH, load_json, load_yaml
from provisioner.errors import BadRequestError


def billion_laughs(levels: int = 9, fan_out: int = 10) -> str:
    """The classic alias bomb: ``fan_out ** levels`` leaves from a few hundred bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan_out)}]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * fan_out)}]")
    return "\n".join(lines) + "\n"


def nested_yaml_mappings(levels: int) -> str:
    """``levels`` flow mappings nested in each other, with a scalar at the bottom."""
    return "{a: " * levels + "1" + "}" * levels


def nested_json_mappings(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


# --- YAML: what is read ----------------------------------------------------------------------


def test_a_plain_mapping_is_read_as_json_compatible_data() -> None:
    """Mappings, sequences and the JSON scalar types come out as dict, list, str, int, bool..."""
    text = "id: urn:x\ncount: 3\nratio: 0.5\nok: true\nnothing: null\nlist: [a, 1]\n"

    assert load_yaml(text) == {
        "id": "urn:x",
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "nothing": None,
        "list": ["a", 1],
    }


def test_aliases_within_the_limits_are_expanded() -> None:
    """An anchor used a few times is copied where it is referenced."""
    assert load_yaml("a: &a [1, 2]\nb: *a\n") == {"a": [1, 2], "b": [1, 2]}


def test_timestamps_stay_the_strings_they_were_written_as() -> None:
    """Dates and date-times are not turned into datetime objects (which JSON cannot hold)."""
    text = "date: 2020-01-01\nstamp: 2020-01-01T10:00:00Z\nlower: 2001-12-14t21:59:43.10-05:00\n"

    assert load_yaml(text) == {
        "date": "2020-01-01",
        "stamp": "2020-01-01T10:00:00Z",
        "lower": "2001-12-14t21:59:43.10-05:00",
    }


def test_mapping_keys_are_the_text_of_their_scalar() -> None:
    """``on:``, ``200:``, ``1.5:``, ``null:``, ``true:`` and ``~:`` keys stay the text written."""
    text = "on: a\n200: b\n1.5: c\nnull: d\ntrue: e\n~: f\n0x1F: g\n"

    loaded = load_yaml(text)

    assert loaded == {
        "on": "a",
        "200": "b",
        "1.5": "c",
        "null": "d",
        "true": "e",
        "~": "f",
        "0x1F": "g",
    }
    assert all(isinstance(key, str) for key in loaded)


def test_the_loaded_document_round_trips_through_json() -> None:
    """Keys and timestamps as strings make ``json.dumps`` of the result lossless."""
    loaded = load_yaml("on: 2020-01-01\n200: [1, 2]\n")

    assert json.loads(json.dumps(loaded)) == loaded


def test_merge_keys_merge_the_referenced_mapping_with_local_keys_winning() -> None:
    """``<<: *base`` copies the anchor's keys; keys written locally override them."""
    text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n"

    assert load_yaml(text)["d"] == {"x": 1, "y": 3}


def test_merge_keys_accept_a_list_of_mappings() -> None:
    """``<<: [*x, *y]`` merges several anchors."""
    text = "x: &x {a: 1}\ny: &y {b: 2}\nz: {<<: [*x, *y], c: 3}\n"

    assert load_yaml(text)["z"] == {"a": 1, "b": 2, "c": 3}


def test_a_merge_of_a_scalar_is_malformed_yaml() -> None:
    """``<<: 1`` is refused as a BadRequestError, not an internal error."""
    with pytest.raises(BadRequestError, match="malformed YAML"):
        load_yaml("a: {<<: 1}\n")


def test_explicit_core_tags_are_accepted() -> None:
    """``!!str`` and ``!!int`` are JSON-compatible types and are honoured."""
    assert load_yaml("a: !!str 12\nb: !!int '12'\n") == {"a": "12", "b": 12}


# --- YAML: what is refused -------------------------------------------------------------------


def test_an_alias_bomb_is_refused() -> None:
    """A billion-laughs document is refused for its expanded size, not expanded."""
    with pytest.raises(BadRequestError, match="expands to more than"):
        load_yaml(billion_laughs())


def test_the_expanded_node_count_is_what_is_bounded() -> None:
    """Three aliases of one scalar count as three nodes: 8 in all, fine at 8, refused at 7."""
    text = "a: &a x\nb: [*a, *a, *a]\n"

    assert load_yaml(text, max_nodes=8) == {"a": "x", "b": ["x", "x", "x"]}
    with pytest.raises(BadRequestError, match="more than 7 nodes"):
        load_yaml(text, max_nodes=7)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: &a [*a]\n", id="sequence-in-mapping"),
        pytest.param("&a [*a]\n", id="sequence"),
        pytest.param("&a {x: *a}\n", id="mapping"),
        pytest.param("a: &a {b: [1, {c: *a}]}\n", id="deep"),
    ],
)
def test_a_recursive_alias_is_refused(text: str) -> None:
    """An alias that refers to its own anchor (directly or deeper down) is refused."""
    with pytest.raises(BadRequestError, match="recursive alias"):
        load_yaml(text)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        pytest.param("!!python/object:os.system {}\n", "python/object", id="python-object"),
        pytest.param(
            "a: !!python/object/apply:os.system ['ls']\n", "python/object/apply", id="apply"
        ),
        pytest.param("a: !!python/name:os.system ''\n", "python/name", id="python-name"),
        pytest.param("a: !!binary aGVsbG8=\n", "binary", id="binary"),
        pytest.param("a: !!set {x}\n", "set", id="set"),
        pytest.param("a: !!omap [x: 1]\n", "omap", id="omap"),
        pytest.param("a: !!timestamp 2020-01-01\n", "timestamp", id="timestamp"),
        pytest.param("a: !custom x\n", "!custom", id="local-tag"),
        pytest.param("? !!binary aGVsbG8=\n: x\n", "binary", id="tagged-key"),
    ],
)
def test_unsupported_tags_are_refused(text: str, tag: str) -> None:
    """Only the JSON-compatible YAML types are accepted; any other tag is refused by name."""
    with pytest.raises(BadRequestError, match="unsupported YAML type") as caught:
        load_yaml(text)

    assert tag in caught.value.message


def test_a_non_scalar_mapping_key_is_refused() -> None:
    """A sequence used as a key cannot become a JSON object key."""
    with pytest.raises(BadRequestError, match="mapping keys must be scalars"):
        load_yaml("? [a, b]\n: c\n")


def test_nesting_up_to_the_limit_is_accepted() -> None:
    """``MAX_DEPTH`` nested empty sequences are read."""
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH

    loaded = load_yaml(text)

    for _ in range(MAX_DEPTH - 1):
        loaded = loaded[0]
    assert loaded == []


def test_nesting_beyond_the_limit_is_refused() -> None:
    """One sequence more than ``MAX_DEPTH`` is refused before anything is built."""
    text = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)

    with pytest.raises(BadRequestError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_yaml(text)


def test_the_depth_limit_is_a_parameter() -> None:
    """``max_depth`` bounds the nesting: a small limit refuses a small document."""
    with pytest.raises(BadRequestError, match="nested deeper than 2 levels"):
        load_yaml("a: {b: {c: 1}}\n", max_depth=2)


def test_yaml_and_json_agree_on_a_document_nested_exactly_to_the_limit() -> None:
    """The same data nested ``MAX_DEPTH`` mappings deep is accepted whichever way it is sent."""
    as_json = load_json(nested_json_mappings(MAX_DEPTH))

    assert load_yaml(nested_yaml_mappings(MAX_DEPTH)) == as_json


def test_several_documents_in_one_stream_are_refused() -> None:
    """A second ``---`` document is refused, with its position."""
    with pytest.raises(BadRequestError, match=r"another document \(line 2, column 1\)"):
        load_yaml("a: 1\n---\nb: 2\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_document_is_refused(text: str) -> None:
    """A body with no YAML content at all is refused as empty."""
    with pytest.raises(BadRequestError, match="the document is empty"):
        load_yaml(text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param("a: [1, 2\nb: 3\n", "(line 2, column 2)", id="unclosed-flow"),
        pytest.param("a: b: c\n", "(line 1, column 5)", id="mapping-in-scalar"),
        pytest.param("a: 1\n\t- x\n", "(line 2, column 1)", id="tab"),
        pytest.param('a: "\\ud800"\n', "(line 1, column 7)", id="surrogate-escape"),
    ],
)
def test_malformed_yaml_is_refused_with_line_and_column(text: str, where: str) -> None:
    """The message says what is wrong and where, counting lines and columns from 1."""
    with pytest.raises(BadRequestError, match=r"^malformed YAML: ") as caught:
        load_yaml(text)

    assert caught.value.message.endswith(where)


# --- JSON ------------------------------------------------------------------------------------


def test_json_is_read_from_text_or_bytes() -> None:
    """``load_json`` accepts ``str`` and UTF-8 ``bytes`` alike."""
    assert load_json('{"a": [1, "x"]}') == load_json(b'{"a": [1, "x"]}') == {"a": [1, "x"]}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param('{"a":', id="truncated"),
        pytest.param('{"a": 1}{"b": 2}', id="two-documents"),
        pytest.param(b"\xff", id="not-utf8"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_json_is_refused(data: str | bytes) -> None:
    """Anything ``json`` cannot read is a BadRequestError naming the problem."""
    with pytest.raises(BadRequestError, match=r"^malformed JSON: "):
        load_json(data)


def test_json_nested_up_to_the_limit_is_accepted() -> None:
    """``MAX_DEPTH`` nested arrays are read."""
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_json_nested_beyond_the_limit_is_refused() -> None:
    """One array more than ``MAX_DEPTH`` is refused."""
    with pytest.raises(BadRequestError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_json_nested_beyond_the_recursion_limit_is_refused_not_crashed() -> None:
    """Nesting deep enough to exhaust the parser's recursion is a BadRequestError too."""
    with pytest.raises(BadRequestError):
        load_json("[" * 100_000 + "]" * 100_000)


def test_json_with_a_lone_surrogate_is_refused() -> None:
    """A string no UTF-8 text can hold is refused on input (as YAML already refuses it)."""
    with pytest.raises(BadRequestError):
        load_json('{"description": "\\ud800"}')


def test_depth_counts_containers_only() -> None:
    """Scalars do not add a level: ``{"a": [1]}`` is two levels deep, in JSON and YAML."""
    assert load_json('{"a": [1]}', max_depth=2) == {"a": [1]}
    assert load_yaml("a: [1]", max_depth=2) == {"a": [1]}

    with pytest.raises(BadRequestError, match="nested deeper than 1 levels"):
        load_json('{"a": [1]}', max_depth=1)
    with pytest.raises(BadRequestError, match="nested deeper than 1 levels"):
        load_yaml("a: [1]", max_depth=1)
