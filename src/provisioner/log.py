"""structlog set-up: JSON lines in containers, readable lines on a terminal."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

# Bearer secrets that must never reach a log line, wherever a message might quote them: API
# tokens, JWTs (three base64url parts, the first a JSON object: "eyJ"), Authorization headers.
_SECRETS = re.compile(
    r"prov_[0-9a-f]{16}_[A-Za-z0-9_-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}"
)
_SECRET_KEYS = frozenset({"authorization"})


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: bearer secrets in any text value become ``[redacted]``."""
    for key, value in event.items():
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
        elif isinstance(value, str) and _SECRETS.search(value):
            event[key] = _SECRETS.sub("[redacted]", value)
    return event


def redact_exception(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``redact_secrets`` for the one value made after the shared chain ran: the traceback
    text ``format_exc_info`` writes (every other value was redacted already)."""
    text = event.get("exception")
    if isinstance(text, str) and _SECRETS.search(text):
        event["exception"] = _SECRETS.sub("[redacted]", text)
    return event


def configure_logging(
    *, fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    """Route structlog and the standard library's logging through one renderer."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # JSON lines carry a traceback as text; the console renderer prints it itself, plainly:
    # its default (with rich installed) prints every frame's local variables, privateInfo too.
    renderers: list[structlog.types.Processor] = (
        [
            structlog.processors.format_exc_info,
            redact_exception,  # tracebacks become text only now
            structlog.processors.JSONRenderer(),
        ]
        if use_json
        else [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
            foreign_pre_chain=shared,
        )
    )
    # No renderer shows a record's source line, process, thread or multiprocessing names: not
    # looking them up (the logging HOWTO's "Optimization") saves a walk up the stack, a getpid()
    # system call and two lookups on every line.
    logging._srcfile = None
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log is noise at the request rates provisioner serves; errors still show.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
