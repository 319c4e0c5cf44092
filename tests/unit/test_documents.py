"""Safe loading of untrusted YAML and JSON documents (``provisioner.domain.documents``)."""

from __future__ import annotations

import json

import pytest

from provisioner.domain.documents import (
    MAX_DEPTH,
    MAX_INTEGER_DIGITS,
    MAX_WARNINGS,
    load_json,
    load_yaml,
)
from provisioner.errors import BadRequestError, Problem


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

    assert load_yaml(text).value == {
        "id": "urn:x",
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "nothing": None,
        "list": ["a", 1],
    }


def test_aliases_within_the_limits_are_expanded() -> None:
    """An anchor used a few times is copied where it is referenced."""
    assert load_yaml("a: &a [1, 2]\nb: *a\n").value == {"a": [1, 2], "b": [1, 2]}


def test_timestamps_stay_the_strings_they_were_written_as() -> None:
    """Dates and date-times are not turned into datetime objects (which JSON cannot hold)."""
    text = "date: 2020-01-01\nstamp: 2020-01-01T10:00:00Z\nlower: 2001-12-14t21:59:43.10-05:00\n"

    assert load_yaml(text).value == {
        "date": "2020-01-01",
        "stamp": "2020-01-01T10:00:00Z",
        "lower": "2001-12-14t21:59:43.10-05:00",
    }


def test_mapping_keys_are_the_text_of_their_scalar() -> None:
    """``on:``, ``200:``, ``1.5:``, ``null:``, ``true:`` and ``~:`` keys stay the text written."""
    text = "on: a\n200: b\n1.5: c\nnull: d\ntrue: e\n~: f\n0x1F: g\n"

    loaded = load_yaml(text).value

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
    loaded = load_yaml("on: 2020-01-01\n200: [1, 2]\n").value

    assert json.loads(json.dumps(loaded)) == loaded


def test_merge_keys_merge_the_referenced_mapping_with_local_keys_winning() -> None:
    """``<<: *base`` copies the anchor's keys; keys written locally override them."""
    text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n"

    assert load_yaml(text).value["d"] == {"x": 1, "y": 3}


def test_merge_keys_accept_a_list_of_mappings() -> None:
    """``<<: [*x, *y]`` merges several anchors."""
    text = "x: &x {a: 1}\ny: &y {b: 2}\nz: {<<: [*x, *y], c: 3}\n"

    assert load_yaml(text).value["z"] == {"a": 1, "b": 2, "c": 3}


def test_a_merge_of_a_scalar_is_malformed_yaml() -> None:
    """``<<: 1`` is refused as a BadRequestError, not an internal error."""
    with pytest.raises(BadRequestError, match="malformed YAML"):
        load_yaml("a: {<<: 1}\n")


def test_explicit_core_tags_are_accepted() -> None:
    """``!!str`` and ``!!int`` are JSON-compatible types and are honoured."""
    assert load_yaml("a: !!str 12\nb: !!int '12'\n").value == {"a": "12", "b": 12}


# --- YAML: what is refused -------------------------------------------------------------------


def test_an_alias_bomb_is_refused() -> None:
    """A billion-laughs document is refused for its expanded size, not expanded."""
    with pytest.raises(BadRequestError, match="expands to more than"):
        load_yaml(billion_laughs())


def test_the_expanded_node_count_is_what_is_bounded() -> None:
    """Three aliases of one scalar count as three nodes: 8 in all, fine at 8, refused at 7."""
    text = "a: &a x\nb: [*a, *a, *a]\n"

    assert load_yaml(text, max_nodes=8).value == {"a": "x", "b": ["x", "x", "x"]}
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

    loaded = load_yaml(text).value

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
    as_json = load_json(nested_json_mappings(MAX_DEPTH)).value

    assert load_yaml(nested_yaml_mappings(MAX_DEPTH)).value == as_json


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
    assert (
        load_json('{"a": [1, "x"]}').value == load_json(b'{"a": [1, "x"]}').value == {"a": [1, "x"]}
    )


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
    assert load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH).value is not None


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
    assert load_json('{"a": [1]}', max_depth=2).value == {"a": [1]}
    assert load_yaml("a: [1]", max_depth=2).value == {"a": [1]}

    with pytest.raises(BadRequestError, match="nested deeper than 1 levels"):
        load_json('{"a": [1]}', max_depth=1)
    with pytest.raises(BadRequestError, match="nested deeper than 1 levels"):
        load_yaml("a: [1]", max_depth=1)


# --- YAML: the expanded text is bounded --------------------------------------------------------


def alias_multiplier(scalar_chars: int, fan_out: int = 100) -> str:
    """A scalar referenced ``fan_out`` times in a list, that list ``fan_out`` times: about
    ``scalar_chars * fan_out**2`` characters of text from a body of ``scalar_chars`` bytes."""
    lines = [
        f"s: &s {'x' * scalar_chars}",
        f"l1: &l1 [{', '.join(['*s'] * fan_out)}]",
        f"l2: [{', '.join(['*l1'] * fan_out)}]",
    ]
    return "\n".join(lines) + "\n"


def test_aliases_may_not_multiply_the_text_past_the_limit() -> None:
    """An 11 KB body that expands to 100 MB (a 10 KiB scalar through 100 x 100 aliases) is
    refused: the node count alone (10,000 nodes) let it through."""
    text = alias_multiplier(10 * 1024)
    assert len(text) < 12_000

    with pytest.raises(BadRequestError, match="expands to more than 5242880 characters of text"):
        load_yaml(text)


def test_the_expanded_text_limit_is_a_parameter_and_counts_every_use() -> None:
    """``a: &a xxxx`` used three more times is 16 characters of text (keys count too: 3)."""
    text = "a: &a xxxx\nb: [*a, *a, *a]\n"

    assert load_yaml(text, max_text=18).value == {"a": "xxxx", "b": ["xxxx"] * 3}
    with pytest.raises(BadRequestError, match="more than 17 characters"):
        load_yaml(text, max_text=17)


def test_a_document_without_aliases_is_never_refused_for_its_text() -> None:
    """Scalar text never exceeds the bytes it was written with: a body within the limit passes."""
    text = f"a: {'x' * 1000}\nb: '{'y' * 1000}'\n"

    assert load_yaml(text, max_text=len(text.encode())).value["a"] == "x" * 1000


# --- YAML: only numbers JSON can hold ----------------------------------------------------------


@pytest.mark.parametrize(
    "scalar",
    [
        pytest.param("1:30", id="int"),
        pytest.param("-1:30:00", id="negative-int"),
        pytest.param("1:30.5", id="float"),
        pytest.param(":".join(["1"] * 160_000), id="160000-parts"),
        pytest.param("!!int '1:30'", id="explicit"),
    ],
)
def test_a_sexagesimal_number_is_refused(scalar: str) -> None:
    """YAML 1.1 reads ``1:30`` as 90 (and 160,000 parts cost quadratic time); JSON has no base
    60: the value must be quoted, whichever it meant."""
    with pytest.raises(BadRequestError, match="is a sexagesimal number: quote it"):
        load_yaml(f"a: {scalar}\n")


def test_a_quoted_sexagesimal_is_text() -> None:
    assert load_yaml("a: '1:30'\n").value == {"a": "1:30"}


@pytest.mark.parametrize(
    "scalar",
    [
        pytest.param("9" * (MAX_INTEGER_DIGITS + 1), id="decimal"),
        pytest.param("-" + "9" * (MAX_INTEGER_DIGITS + 1), id="negative"),
        pytest.param("0x" + "f" * 4000, id="hex"),
        pytest.param("0" + "7" * 5000, id="octal"),
        pytest.param("0b" + "1" * 15_000, id="binary"),
    ],
)
def test_an_integer_of_more_digits_than_python_converts_is_refused(scalar: str) -> None:
    """Past ``MAX_INTEGER_DIGITS`` decimal digits, however written, the service could not turn
    the number back into text: a 400, not a 500."""
    with pytest.raises(BadRequestError, match=f"more than {MAX_INTEGER_DIGITS} digits"):
        load_yaml(f"a: {scalar}\n")


def test_an_integer_of_the_maximum_digits_is_read() -> None:
    value = load_yaml(f"a: {'9' * MAX_INTEGER_DIGITS}\n").value["a"]

    assert value == 10**MAX_INTEGER_DIGITS - 1
    assert json.loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    "scalar", [".inf", "-.inf", "+.INF", ".nan", ".NaN", "1.0e+400", "-1.0e+999", "!!float inf"]
)
def test_a_non_finite_float_is_refused(scalar: str) -> None:
    """JSON has no NaN or infinity (and a number past a double's range would be infinity)."""
    with pytest.raises(BadRequestError, match="line 1"):
        load_yaml(f"a: {scalar}\n")


@pytest.mark.parametrize(
    ("scalar", "message"),
    [
        pytest.param("!!int abc", "'abc' is not an integer", id="int"),
        pytest.param("!!int ''", "'' is not an integer", id="empty-int"),
        pytest.param("!!float abc", "'abc' is not a number", id="float"),
        pytest.param("!!bool maybe", "'maybe' is not a boolean", id="bool"),
        pytest.param("!!map x", "cannot be written on a scalar", id="map-on-scalar"),
        pytest.param("!!seq x", "cannot be written on a scalar", id="seq-on-scalar"),
        pytest.param("!!str [x]", "cannot be written on a sequence", id="str-on-sequence"),
    ],
)
def test_an_explicit_tag_on_text_it_does_not_fit_is_refused(scalar: str, message: str) -> None:
    """``!!int abc`` and ``!!map x`` were 500s; they are malformed documents."""
    with pytest.raises(BadRequestError, match=message):
        load_yaml(f"a: {scalar}\n")


def test_json_compatible_numbers_are_read_as_before() -> None:
    """Integers in every YAML base, floats, and booleans still come out as numbers."""
    text = "a: 12\nb: -0x1F\nc: 017\nd: 0b101\ne: 1_000\nf: 1.5e+3\ng: -0.5\nh: yes\n"

    assert load_yaml(text).value == {
        "a": 12,
        "b": -31,
        "c": 15,
        "d": 5,
        "e": 1000,
        "f": 1500.0,
        "g": -0.5,
        "h": True,
    }


# --- YAML: duplicate keys ----------------------------------------------------------------------


def test_a_key_repeated_with_another_value_is_refused_with_its_path_and_lines() -> None:
    """A second ``id:`` used to win silently and deploy another unit: which one was meant is
    anyone's guess."""
    text = "id: urn:a\ncomponents:\n  - id: c1\n    kind: k\n    id: c2\n"

    with pytest.raises(BadRequestError) as caught:
        load_yaml(text, path="descriptor")

    assert caught.value.message == (
        "duplicate key 'id' at descriptor.components[0].id (lines 3 and 5) "
        "with different values: keep one"
    )


def test_a_key_repeated_with_the_same_value_is_a_warning() -> None:
    """As in the Data Product Specification's own example (``ownerGroup`` twice): the
    document is read, and the warning names the key, its path and its lines."""
    text = "ownerGroup: g\ndevGroup: d\nownerGroup: g\nspecific: {x: [1, 2], x: [1, 2]}\n"

    loaded = load_yaml(text, path="descriptor")

    assert loaded.value == {"ownerGroup": "g", "devGroup": "d", "specific": {"x": [1, 2]}}
    assert loaded.warnings == (
        Problem(
            "descriptor.ownerGroup",
            "duplicate key 'ownerGroup' (lines 1 and 3) with the same value: one is ignored",
        ),
        Problem(
            "descriptor.specific.x",
            "duplicate key 'x' (lines 4 and 4) with the same value: one is ignored",
        ),
    )


@pytest.mark.parametrize(
    "pair",
    [
        pytest.param("a: 1\na: '1'\n", id="number-and-text"),
        pytest.param("a: 1\na: 01\n", id="written-differently"),
        pytest.param("a: [1, 2]\na: [1, 3]\n", id="lists"),
        pytest.param("a: {x: 1}\na: {x: 1, y: 2}\n", id="mappings"),
        pytest.param("a: null\na: ~\n", id="two-spellings-of-null"),
    ],
)
def test_values_are_the_same_only_when_written_the_same(pair: str) -> None:
    """``1`` and ``'1'`` (or ``01``) are not the same value written twice: refused."""
    with pytest.raises(BadRequestError, match="duplicate key 'a' at a"):
        load_yaml(pair)


def test_an_alias_repeated_under_one_key_is_the_same_value() -> None:
    loaded = load_yaml("x: &x {q: 1}\nb: *x\nb: *x\n")

    assert loaded.value["b"] == {"q": 1}
    assert [warning.path for warning in loaded.warnings] == ["b"]


def test_a_key_given_locally_and_by_a_merge_is_no_duplicate() -> None:
    """Overriding a merged key is what merging is for."""
    loaded = load_yaml("base: &b {x: 1}\nd: {<<: *b, x: 2}\n")

    assert loaded.value["d"] == {"x": 2}
    assert loaded.warnings == ()


def test_warnings_are_listed_up_to_a_bound_then_counted() -> None:
    """Thousands of repeated keys give ``MAX_WARNINGS`` warnings and one that counts the rest."""
    text = "".join("a: 1\n" for _ in range(MAX_WARNINGS + 51))

    warnings = load_yaml(text).warnings

    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == Problem("", "50 more duplicate keys with the same value")


def test_comparing_repeated_values_is_bounded_by_the_node_limit() -> None:
    """Repeated keys whose values are equal but distinct alias trees, in many mappings,
    cannot make comparing them cost more than the document's node limit."""
    lines = ["p0: &p0 [x]", "q0: &q0 [x]"]
    for level in (1, 2):
        lines.append(f"p{level}: &p{level} [{', '.join([f'*p{level - 1}'] * 10)}]")
        lines.append(f"q{level}: &q{level} [{', '.join([f'*q{level - 1}'] * 10)}]")
    lines.append("list:")
    lines += ["  - {k: *p2, k: *q2}"] * 10  # each compares 111 nodes with 111 others
    text = "\n".join(lines) + "\n"

    with pytest.raises(BadRequestError, match="too many keys to compare"):
        load_yaml(text, max_nodes=1000)
    assert len(load_yaml(text).warnings) == 10


# --- JSON: only values JSON means ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e400", "the number '1e400' is out of range"),
        ("-1e400", "the number '-1e400' is out of range"),
    ],
)
def test_json_non_finite_numbers_are_refused(number: str, message: str) -> None:
    """Python's json reads them, but they are not JSON and no JSON column stores them."""
    with pytest.raises(BadRequestError, match=message):
        load_json(f'{{"ratio": {number}}}')


def test_json_integers_are_bounded_like_yaml_ones() -> None:
    """The limit is ours, not the interpreter's (which may be configured otherwise)."""
    assert load_json(f"[{'9' * MAX_INTEGER_DIGITS}]").value == [10**MAX_INTEGER_DIGITS - 1]
    with pytest.raises(BadRequestError, match=f"more than {MAX_INTEGER_DIGITS} digits"):
        load_json(f"[-{'9' * (MAX_INTEGER_DIGITS + 1)}]")


def test_a_json_key_repeated_with_another_value_is_refused_with_its_path() -> None:
    with pytest.raises(BadRequestError) as caught:
        load_json('{"descriptor": {"components": [{"id": "a", "id": "b"}]}}')

    assert caught.value.message == (
        "duplicate key 'id' at descriptor.components[0].id with different values: keep one"
    )


def test_a_json_key_repeated_with_the_same_value_is_a_warning() -> None:
    loaded = load_json('{"a": {"b": [1, {"c": 1}], "b": [1, {"c": 1}]}}', path="body")

    assert loaded.value == {"a": {"b": [1, {"c": 1}]}}
    assert loaded.warnings == (
        Problem("body.a.b", "duplicate key 'b' with the same value: one is ignored"),
    )


@pytest.mark.parametrize("other", ["1.0", "true", '"1"'])
def test_json_values_equal_in_python_but_not_in_json_are_different(other: str) -> None:
    """``1``, ``1.0``, ``true`` and ``"1"`` compare equal in Python, not in a document."""
    with pytest.raises(BadRequestError, match="different values"):
        load_json(f'{{"a": 1, "a": {other}}}')
