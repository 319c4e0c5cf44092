"""``without_private``: privateInfo removed wherever it is, keys and JSON held in text alike."""

from __future__ import annotations

import json

from provisioner.domain.privacy import (
    WITHHELD,
    may_receive_private_info,
    mentions_private,
    without_private,
)

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


# --- who may be sent privateInfo ---------------------------------------------------------------


def test_an_adapter_receives_the_private_info_of_its_own_template() -> None:
    assert may_receive_private_info("urn:itm:s3:0", "urn:itm:s3:0")


def test_another_templates_private_info_is_withheld_unless_a_direct_dependency() -> None:
    assert not may_receive_private_info("urn:itm:port:0", "urn:itm:s3:0")
    assert may_receive_private_info("urn:itm:port:0", "urn:itm:s3:0", dependency=True)


def test_no_template_is_nobodys_own() -> None:
    """A component with no template (the system step without one) matches no adapter, and a
    receiver without a template receives nothing of its own."""
    assert not may_receive_private_info("urn:itm:s3:0", None)
    assert not may_receive_private_info(None, None)


def test_sharing_sends_everything_to_everyone() -> None:
    """PROVISIONER_SHARE_PRIVATE_INFO: the Tech Adapter API's behaviour."""
    assert may_receive_private_info("urn:itm:port:0", "urn:itm:s3:0", share=True)
    assert may_receive_private_info(None, None, share=True)
