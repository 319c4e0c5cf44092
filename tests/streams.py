"""Reading Server-Sent Events over a real connection (httpx.ASGITransport would buffer the whole
stream), and Prometheus text, for the observability tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

EVENT_STREAM = {"accept": "text/event-stream"}


@dataclass(frozen=True)
class Frame:
    """One SSE event (``event``, ``id``, ``data``) or comment (``comment``)."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The frames of an event stream as they arrive."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield Frame(comment=line[1:].strip())
        elif line == "":
            if fields:
                yield Frame(fields.get("event"), fields.get("id"), fields.get("data"))
            fields = {}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name in fields else value


async def read_events(
    response: httpx.Response, *, count: int | None = None
) -> tuple[list[dict[str, Any]], Frame | None]:
    """The audit events of a stream and its ``end`` frame, checking that the server closes the
    stream after ``end``; or, with ``count``, the first ``count`` events only (and None)."""
    events: list[dict[str, Any]] = []
    end: Frame | None = None
    async with asyncio.timeout(60):
        async for frame in frames(response):
            if end is not None:
                assert frame.comment is not None, f"{frame} came after the end"
            elif frame.event == "event":
                event = frame.json()
                assert frame.id == str(event["id"])
                events.append(event)
                if count is not None and len(events) == count:
                    return events, None
            elif frame.event == "end":
                end = frame
    assert end is not None, f"the stream closed without an end event after {len(events)} events"
    return events, end


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent, as Prometheus reads it)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text
