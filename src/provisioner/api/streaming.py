"""An operation's events as Server-Sent Events (``text/event-stream``), with sse-starlette.

Each audit event is an SSE event named ``event`` whose id is its sequence number and whose data
is the JSON of ``EventOut``; a client that reconnects with ``Last-Event-ID`` resumes after it.
When the operation has ended, an event named ``end`` (``{"operationId", "status"}``, no id)
closes the stream: a browser's ``EventSource`` should ``close()`` on it, or it reconnects and
is sent ``end`` again. Idle streams get a ``: keep-alive`` comment every
``PROVISIONER_EVENT_STREAM_PING_SECONDS``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from provisioner.api.schemas import EventOut
from provisioner.service.streams import EventStream, StreamEnd

EVENT_STREAM = "text/event-stream"
# A client that stops reading for this long loses its stream (and its place).
SEND_TIMEOUT_SECONDS = 30.0

EVENT_STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The events as JSON, or, with `Accept: text/event-stream`, a stream of "
        "Server-Sent Events: `event` (id: the sequence number, data: one event) as they "
        "happen, then `end` (data: `{operationId, status}`) when the operation has ended. "
        "Resume with `Last-Event-ID`.",
        "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
    }
}


def wants_event_stream(request: Request) -> bool:
    """Whether ``Accept`` prefers ``text/event-stream`` to JSON (an equal preference too: a
    client naming the stream at all asked for it; ``*/*`` alone is JSON)."""
    stream = json_ = 0.0
    for item in request.headers.get("accept", "").split(","):
        media, _, parameters = item.partition(";")
        quality = _quality(parameters)
        media = media.strip().lower()
        if media == EVENT_STREAM:
            stream = max(stream, quality)
        elif media == "application/json":
            json_ = max(json_, quality)
    return stream > 0 and stream >= json_


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


class EventStreamResponse(EventSourceResponse):
    """The stream of one operation's events; its place is given back however it ends."""

    def __init__(self, stream: EventStream, *, ping_seconds: float) -> None:
        super().__init__(
            _frames(stream),
            ping=ping_seconds,
            ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
            send_timeout=SEND_TIMEOUT_SECONDS,
        )
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.close()


async def _frames(stream: EventStream) -> AsyncIterator[ServerSentEvent]:
    async for item in stream.items():
        if isinstance(item, StreamEnd):
            end = {"operationId": item.operation_id, "status": item.status}
            yield ServerSentEvent(data=json.dumps(end), event="end")
        else:
            event = EventOut.model_validate(item).model_dump(mode="json", by_alias=True)
            yield ServerSentEvent(data=json.dumps(event), id=str(item.id), event="event")
