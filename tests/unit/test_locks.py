"""The lock files pin every dependency pyproject.toml declares: the quickstart installs
requirements.lock and then the package with ``--no-deps``, so a dependency missing from the
lock is a service that does not start on a fresh machine (run `make lock`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _pinned(lock: str) -> set[str]:
    text = (ROOT / lock).read_text(encoding="utf-8")
    return {_name(line) for line in text.splitlines() if re.match(r"[A-Za-z0-9]", line)}


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PYPROJECT["dependencies"]),
        (
            "requirements-dev.lock",
            [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["test"]],
        ),
    ],
)
def test_every_declared_dependency_is_pinned(lock: str, requirements: list[str]) -> None:
    missing = {_name(r) for r in requirements} - _pinned(lock)
    assert not missing, f"{lock} does not pin {sorted(missing)}: run `make lock`"
