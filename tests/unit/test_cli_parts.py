"""The CLI's pure parts: exit codes of answers, optional option values, SSE framing, and
server text printed as text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from provisioner.cli.app import optional_values
from provisioner.cli.exits import Exit
from provisioner.cli.follow import _sse
from provisioner.cli.http import exit_code_of
from provisioner.cli.render import clean, event_line


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, Exit.REFUSED),
        (404, Exit.REFUSED),
        (413, Exit.REFUSED),
        (422, Exit.REFUSED),
        (409, Exit.BUSY),
        (401, Exit.UNREACHABLE),
        (403, Exit.UNREACHABLE),
        (500, Exit.UNREACHABLE),
        (503, Exit.UNREACHABLE),
    ],
)
def test_each_refusal_has_its_exit_code(status: int, code: Exit) -> None:
    assert exit_code_of(status) is code


def test_a_bare_wait_for_lock_means_no_limit_of_its_own() -> None:
    assert optional_values(["deploy", "f.yaml", "--wait-for-lock"]) == [
        "deploy",
        "f.yaml",
        "--wait-for-lock=forever",
    ]
    assert optional_values(["deploy", "--wait-for-lock", "f.yaml"])[1] == "--wait-for-lock=forever"
    assert optional_values(["deploy", "--wait-for-lock", "30", "f.yaml"]) == [
        "deploy",
        "--wait-for-lock",
        "30",
        "f.yaml",
    ]


def test_server_text_cannot_drive_the_terminal() -> None:
    """Escape sequences and line breaks in an adapter's message are printed as text."""
    assert clean("\x1b[2Jgone\nnext\x07") == "?[2Jgone next?"
    line = event_line(
        {
            "at": "2026-12-02T10:00:00Z",
            "componentId": "urn:c",
            "newStatus": "FAILED",
            "detail": {"error": "bad\x1b]0;title\x07"},
        }
    )
    assert line == "10:00:00  !! FAILED    urn:c  bad?]0;title?"


def test_sse_frames_are_read_with_their_names_and_data() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [
            ": keep-alive",
            "",
            "id: 4",
            "event: event",
            'data: {"id": 4}',
            "",
            "event: end",
            "data: {",
            "data: }",
            "",
        ]:
            yield line

    async def read() -> list[tuple[str, str]]:
        return [frame async for frame in _sse(lines())]

    assert asyncio.run(read()) == [("event", '{"id": 4}'), ("end", "{\n}")]
