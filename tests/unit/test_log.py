"""The JSON log lines: one object a line, secrets redacted, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from provisioner.log import configure_logging

TOKEN = "prov_0123456789abcdef_" + "x" * 43


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging writing JSON into a buffer; the logging set-up restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    monkeypatch.setattr(logging, "_srcfile", logging._srcfile)
    for flag in ("logProcesses", "logThreads", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    configure_logging(fmt="json", level="INFO")
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_carries_its_event_bound_values_level_and_time(stream: io.StringIO) -> None:
    structlog.get_logger("provisioner.test").bind(operation_id="op-1").info(
        "task_finished", component_id="c1", attempts=2
    )
    (line,) = lines(stream)
    assert line["event"] == "task_finished"
    assert (line["operation_id"], line["component_id"], line["attempts"]) == ("op-1", "c1", 2)
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")


def test_a_secret_in_a_traceback_is_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"refused {TOKEN}")
    except RuntimeError:
        structlog.get_logger("provisioner.test").exception("crashed", detail=f"with {TOKEN}")
    (line,) = lines(stream)
    assert TOKEN not in stream.getvalue()
    assert "RuntimeError: refused [redacted]" in str(line["exception"])
    assert line["detail"] == "with [redacted]"


def test_standard_library_lines_are_rendered_and_redacted_too(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").warning("bad header %s", TOKEN)
    (line,) = lines(stream)
    assert line["event"] == "bad header [redacted]"
    assert line["level"] == "warning"
