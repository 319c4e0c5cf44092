"""Request ids and W3C trace context: what is taken from a request, what is made, what an
adapter call carries."""

from __future__ import annotations

import asyncio
import re

import pytest

from provisioner import correlation
from provisioner.correlation import Correlation

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", (TRACE, "01")),
        (f"00-{TRACE}-00f067aa0ba902b7-00", (TRACE, "00")),
        (f" 00-{TRACE}-00f067aa0ba902b7-01 ", (TRACE, "01")),
        # A later version is read as version 00 when it starts like one, extra fields ignored.
        (f"cc-{TRACE}-00f067aa0ba902b7-01-what-the-future-holds", (TRACE, "01")),
    ],
)
def test_a_valid_traceparent_gives_its_trace_id_and_flags(
    header: str, expected: tuple[str, str]
) -> None:
    assert correlation.parse_traceparent(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper case
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-00f067aa0ba902b7",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(header: str | None) -> None:
    assert correlation.parse_traceparent(header) is None
    made = correlation.for_request(None, header)
    assert re.fullmatch(r"[0-9a-f]{32}", made.trace_id)
    assert made.trace_id != TRACE
    assert made.trace_flags == "01"


@pytest.mark.parametrize("value", ["abc", "req-42.a:b/c+d=e@f_g", "A" * 128])
def test_a_usable_request_id_is_kept(value: str) -> None:
    assert correlation.for_request(value, None).request_id == value


@pytest.mark.parametrize(
    "value", ["", "has space", "A" * 129, "-leading-dash", 'quote"d', "naïve", "a\nb"]
)
def test_an_unusable_request_id_is_replaced(value: str) -> None:
    made = correlation.for_request(value, None).request_id
    assert made != value
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_each_outgoing_call_has_a_new_span_of_the_same_trace() -> None:
    with correlation.bound(Correlation("req-1", TRACE, "00")):
        first, second = correlation.outgoing_headers(), correlation.outgoing_headers()
    assert first["x-request-id"] == second["x-request-id"] == "req-1"
    parts = [headers["traceparent"].split("-") for headers in (first, second)]
    assert [p[1] for p in parts] == [TRACE, TRACE]
    assert [p[3] for p in parts] == ["00", "00"]
    assert parts[0][2] != parts[1][2]
    assert correlation.parse_traceparent(first["traceparent"]) == (TRACE, "00")


def test_a_call_outside_any_request_carries_a_trace_of_its_own() -> None:
    assert correlation.current() is None
    headers = correlation.outgoing_headers()
    assert "x-request-id" not in headers
    assert correlation.parse_traceparent(headers["traceparent"]) is not None


def test_an_operation_stored_without_ids_uses_its_own_id() -> None:
    operation_id = "01a213ae-374b-75e4-9e67-fe8cff5deecd"
    own = correlation.for_operation(operation_id, None, None)
    assert own == Correlation(operation_id, "01a213ae374b75e49e67fe8cff5deecd")
    assert correlation.for_operation(operation_id, "req", TRACE) == Correlation("req", TRACE)


async def test_tasks_started_by_the_work_inherit_its_correlation() -> None:
    """What an operation's run binds is seen by the tasks it starts, and not by others."""
    mine = Correlation("req-9", TRACE)

    async def run() -> Correlation | None:
        correlation.bind(mine)
        return await asyncio.create_task(child())

    async def child() -> Correlation | None:
        return correlation.current()

    assert await asyncio.create_task(run()) == mine
    assert correlation.current() is None
