"""``without_private``: privateInfo removed wherever it is, keys and JSON held in text alike."""

from __future__ import annotations

import json

from provisioner.domain.privacy import WITHHELD, mentions_private, without_private

SECRET = "s3cret"


def test_keys_are_removed_at_any_depth_and_the_rest_kept() -> None:
    data = {"a": [{"privateInfo": SECRET, "b": 1}], "privateInfo": {"x": SECRET}, "c": None}

    assert without_private(data) == {"a": [{"b": 1}], "c": None}


def test_a_json_object_in_text_is_cleaned_and_written_back_as_json() -> None:
    text = json.dumps({"info": {"publicInfo": {"a": 1}, "privateInfo": {"pw": SECRET}}})

    cleaned = without_private({"error": text})

    assert json.loads(cleaned["error"]) == {"info": {"publicInfo": {"a": 1}}}


def test_a_json_array_in_text_is_cleaned_and_nested_text_too() -> None:
    inner = json.dumps({"privateInfo": SECRET, "k": "v"})
    text = json.dumps([{"message": inner}])

    cleaned = json.loads(without_private(text))

    assert json.loads(cleaned[0]["message"]) == {"k": "v"}


def test_other_text_that_mentions_private_info_is_kept_unless_withheld() -> None:
    """A descriptor's own prose stays; text for display (errors, logs) is withheld whole."""
    text = f"failed: {{'privateInfo': {{'pw': '{SECRET}'}}}}"

    assert without_private(text) == text
    assert without_private(text, withhold_mentions=True) == WITHHELD
    assert without_private([text, "fine"], withhold_mentions=True) == [WITHHELD, "fine"]


def test_text_too_deep_to_clean_is_withheld_for_display() -> None:
    text = '{"privateInfo": ' + "[" * 5000 + "]" * 5000 + "}"

    assert without_private(text, withhold_mentions=True) == WITHHELD


def test_mentions_are_found_in_any_letter_case() -> None:
    assert mentions_private("PRIVATEINFO: x")
    assert not mentions_private("private info")
