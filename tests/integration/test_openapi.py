"""The exported OpenAPI document is the app's."""

from __future__ import annotations

from pathlib import Path

from provisioner.api.openapi import render

EXPORTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_the_exported_openapi_document_matches_the_app() -> None:
    """Regenerate with `python -m provisioner.api.openapi` after changing the API."""
    assert EXPORTED.read_text(encoding="utf-8") == render()


def test_error_answers_are_documented_as_problem_details() -> None:
    document = render()
    assert "HTTPValidationError" not in document
    assert '"application/problem+json"' in document
