"""Which request a piece of work is for: its request id and W3C trace context.

A request's id is taken from its ``X-Request-Id`` header when that is a usable one, or made; its
trace from its ``traceparent`` header (https://www.w3.org/TR/trace-context/), or a new one. Both
travel with the work in a context variable: the API binds them for a request, the engine for an
operation it runs in the background (the ids of the request that submitted it, stored with the
operation). Every Tech Adapter call sends them on (``outgoing_headers``), with a new span id per
call, so that an adapter's logs can be joined to provisioner's.

Standard library only: the engine, the adapter client and the API all use it.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID = 128
# Printable ASCII without spaces or quotes: safe in a header, a log line and a database column.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")
# version-traceid-parentid-flags, lowercase hex (trace context level 1, section 3.2).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
SAMPLED = "01"


@dataclass(frozen=True, slots=True)
class Correlation:
    """The request id and trace a piece of work belongs to."""

    request_id: str
    trace_id: str  # 32 lowercase hex digits, not all zero
    trace_flags: str = SAMPLED  # 2 hex digits, as received (sampled when we started the trace)

    def traceparent(self) -> str:
        """A ``traceparent`` for one outgoing call: this trace, a new span id."""
        return f"00-{self.trace_id}-{secrets.token_hex(8)}-{self.trace_flags}"

    def headers(self) -> dict[str, str]:
        """The headers an outgoing call carries."""
        return {REQUEST_ID_HEADER: self.request_id, TRACEPARENT_HEADER: self.traceparent()}


_CURRENT: ContextVar[Correlation | None] = ContextVar("provisioner_correlation", default=None)


def current() -> Correlation | None:
    """The correlation of the work running now, if any."""
    return _CURRENT.get()


def bind(correlation: Correlation) -> None:
    """Make ``correlation`` the current one for the rest of this task (and the tasks it starts).

    Not undone: an asyncio task's context ends with it, so an ASGI request or an operation's run
    binds once, at its start; use ``bound`` for a narrower scope.
    """
    _CURRENT.set(correlation)


@contextmanager
def bound(correlation: Correlation) -> Iterator[Correlation]:
    """``correlation`` is current inside the block."""
    token = _CURRENT.set(correlation)
    try:
        yield correlation
    finally:
        _CURRENT.reset(token)


def outgoing_headers() -> dict[str, str]:
    """The correlation headers of an outgoing call: the current work's, or a fresh trace."""
    correlation = _CURRENT.get()
    if correlation is None:
        return {TRACEPARENT_HEADER: f"00-{new_trace_id()}-{secrets.token_hex(8)}-{SAMPLED}"}
    return correlation.headers()


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_trace_id() -> str:
    return secrets.token_hex(16)


def usable_request_id(value: str | None) -> str | None:
    """``value`` if it can be used as a request id as it is, else None (one is made instead)."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value
    return None


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """The trace id and flags of a valid ``traceparent``, else None.

    A version this code does not know (other than the invalid ``ff``) is read as version 00 when
    it starts like one, as the specification asks; anything else starts a new trace.
    """
    if value is None:
        return None
    value = value.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    rest = value[match.end() :]
    if (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    return trace_id, flags


def for_request(request_id: str | None, traceparent: str | None) -> Correlation:
    """The correlation of an incoming request, from its headers (either may be missing)."""
    trace = parse_traceparent(traceparent)
    trace_id, flags = trace if trace is not None else (new_trace_id(), SAMPLED)
    return Correlation(usable_request_id(request_id) or new_request_id(), trace_id, flags)


def for_operation(operation_id: str, request_id: str | None, trace_id: str | None) -> Correlation:
    """The correlation of an operation run in the background: the submitting request's ids, as
    stored with it; for an operation stored without them, its own id serves as both (a UUID's
    32 hex digits are a valid trace id)."""
    fallback = operation_id.replace("-", "").lower()
    if trace_id is None or not re.fullmatch(r"[0-9a-f]{32}", trace_id) or trace_id == _ZERO_TRACE:
        trace_id = fallback if re.fullmatch(r"[0-9a-f]{32}", fallback) else new_trace_id()
    return Correlation(request_id or operation_id, trace_id)
