"""Adapters' ``privateInfo`` is stored and sent back to adapters, never shown to users."""

from __future__ import annotations

import json
import re
from typing import Any

PRIVATE_KEY = "privateInfo"
WITHHELD = "(withheld: it mentions privateInfo)"
_MENTION = re.compile(re.escape(PRIVATE_KEY), re.IGNORECASE)


def without_private(value: Any, *, withhold_mentions: bool = False) -> Any:
    """A copy of JSON-like data with every ``privateInfo`` key removed, at any depth.

    A string that is itself a JSON object or array (an adapter's ``error`` field often quotes a
    whole answer) is cleaned the same way and written back as JSON. With ``withhold_mentions``
    (text for display: errors, logs), any other string that mentions privateInfo is replaced by
    ``WITHHELD``: a Python ``repr`` of a dict, or JSON inside a sentence, cannot be cleaned.
    """
    if isinstance(value, dict):
        return {
            key: without_private(item, withhold_mentions=withhold_mentions)
            for key, item in value.items()
            if key != PRIVATE_KEY
        }
    if isinstance(value, list):
        return [without_private(item, withhold_mentions=withhold_mentions) for item in value]
    if isinstance(value, str) and mentions_private(value):
        return _text_without_private(value, withhold_mentions=withhold_mentions)
    return value


def mentions_private(text: str) -> bool:
    """Whether ``text`` mentions privateInfo, in any letter case."""
    return _MENTION.search(text) is not None


def _text_without_private(text: str, *, withhold_mentions: bool) -> str:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped)
            if isinstance(data, dict | list):
                cleaned = without_private(data, withhold_mentions=withhold_mentions)
                return json.dumps(cleaned, ensure_ascii=False)
        except (ValueError, RecursionError):
            pass  # not JSON after all (or too deep to clean): treated as text
    return WITHHELD if withhold_mentions else text


def may_receive_private_info(
    receiver: str | None, producer: str | None, *, dependency: bool = False, share: bool = False
) -> bool:
    """Whether the Tech Adapter of template ``receiver`` may be sent the ``privateInfo`` that
    the adapter of template ``producer`` returned for a component (least privilege).

    An adapter receives the private info of the components it provisions itself (the same
    ``infrastructureTemplateId``) and of the direct dependencies (``dependency``) of the
    component it is provisioning; ``share`` (``PROVISIONER_SHARE_PRIVATE_INFO``) restores the
    Tech Adapter API's behaviour, every adapter receiving everything.
    """
    if share or dependency:
        return True
    return receiver is not None and receiver == producer
