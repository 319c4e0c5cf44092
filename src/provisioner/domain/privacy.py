"""Adapters' ``privateInfo`` is stored and sent back to adapters, never shown to users."""

from __future__ import annotations

from typing import Any

PRIVATE_KEY = "privateInfo"


def without_private(value: Any) -> Any:
    """A copy of JSON-like data with every ``privateInfo`` key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_private(v) for k, v in value.items() if k != PRIVATE_KEY}
    if isinstance(value, list):
        return [without_private(item) for item in value]
    return value
