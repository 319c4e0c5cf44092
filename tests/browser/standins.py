"""Stand-ins, in front of the real service, for two contracts the dashboard is built against
before their implementations land on main: bearer-token authentication and the Server-Sent
Events stream of an operation. Each follows the contract as documented for the dashboard and
adds nothing else, so that the dashboard's handling of them runs in a real browser now; when
the real ones land, the tests that use these switch to the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
EVENTS_PATH = re.compile(r"/v1/operations/([^/]+)/events")


async def _problem(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(
        {
            "type": "urn:provisioner:problem:auth",
            "title": detail,
            "status": status,
            "detail": detail,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/problem+json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class BearerGate:
    """``Authorization: Bearer <token>`` on every ``/v1`` request: 401 with
    ``WWW-Authenticate: Bearer`` without a known token, 403 naming the missing scope (``read``
    to read, ``deploy:*`` to act). ``seen`` records the token each request carried."""

    app: ASGIApp
    tokens: dict[str, frozenset[str]]
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"").decode()
        token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
        self.seen.append((scope["method"], scope["path"], token))
        scopes = self.tokens.get(token or "")
        if scopes is None:
            detail = "a bearer token is required" if token is None else "the token is not valid"
            await _problem(send, 401, detail, [(b"www-authenticate", b"Bearer")])
            return
        needed = "read" if scope["method"] == "GET" else "deploy:*"
        if needed not in scopes:
            await _problem(send, 403, f"the token lacks the scope {needed}", [])
            return
        await self.app(scope, receive, send)


@dataclass
class EventStream:
    """``GET /v1/operations/{id}/events`` with ``Accept: text/event-stream`` answered as
    Server-Sent Events, read from the wrapped service's JSON endpoint: each event's ``id`` its
    sequence number, ``data`` the event as JSON, ``Last-Event-ID`` (or ``after``) resumes, and
    an ``end`` event follows the operation's last transition. ``streams`` counts the streams
    served; ``cut_first_after`` acts out a dropped connection."""

    app: ASGIApp
    cut_first_after: int | None = None  # close the first stream after this many events
    streams: int = 0
    resumed_from: list[int] = field(default_factory=list)  # Last-Event-ID values received

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and EVENTS_PATH.fullmatch(scope["path"])
            and b"text/event-stream" in headers.get(b"accept", b"")
        ):
            await self._stream(scope, headers, receive, send)
            return
        await self.app(scope, receive, send)

    async def _stream(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        self.streams += 1
        cut = self.cut_first_after if self.streams == 1 else None
        query = dict(
            part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part
        )
        if b"last-event-id" in headers:
            self.resumed_from.append(int(headers[b"last-event-id"]))
        after = int(headers.get(b"last-event-id", b"") or query.get("after") or 0)
        sent = 0
        gone = asyncio.Event()
        watcher = asyncio.create_task(_wait_disconnect(receive, gone))
        transport = httpx.ASGITransport(app=self.app)
        forwarded = {"authorization": headers.get(b"authorization", b"").decode()}
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache"),
                        ],
                    }
                )
                while not gone.is_set():
                    page = await client.get(
                        scope["path"], params={"after": after}, headers=forwarded
                    )
                    for event in page.json()["items"]:
                        if sent == cut:
                            return  # the connection drops
                        after = event["id"]
                        sent += 1
                        await _frame(send, f"id: {after}\ndata: {json.dumps(event)}\n\n")
                        if event["componentId"] is None and event["newStatus"] in ENDED:
                            await _frame(send, f"id: {after}\nevent: end\ndata: {{}}\n\n")
                            return
                    await _frame(send, ": keep-alive\n\n")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), 0.1)
        finally:
            watcher.cancel()
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _frame(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _wait_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return
