"""Two thin ASGI wrappers around the real service for the browser tier: one records what each
request carried, the other acts out a dropped connection on the first event stream. Neither
answers for the service: every request reaches the real app, and every byte it sends goes to
the browser until the drop."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVENTS_PATH = re.compile(r"/v1/operations/([^/]+)/events")


@dataclass
class RequestLog:
    """Records ``(method, path, bearer token or None)`` of every ``/v1`` request."""

    app: ASGIApp
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"authorization", b"").decode()
            token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
            self.seen.append((scope["method"], scope["path"], token))
        await self.app(scope, receive, send)


@dataclass
class DropFirstStream:
    """Ends the first ``text/event-stream`` answer after ``events`` events, as a dropped
    connection would; records the ``Last-Event-ID`` of every stream request after it."""

    app: ASGIApp
    events: int
    streams: int = 0
    resumed_from: list[int] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if not (
            scope["type"] == "http"
            and EVENTS_PATH.fullmatch(scope["path"])
            and b"text/event-stream" in headers.get(b"accept", b"")
        ):
            await self.app(scope, receive, send)
            return
        self.streams += 1
        if b"last-event-id" in headers:
            self.resumed_from.append(int(headers[b"last-event-id"]))
        if self.streams > 1:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._cutting(send))

    def _cutting(self, send: Send) -> Send:
        sent = 0
        cut = False

        async def forward(message: Message) -> None:
            nonlocal sent, cut
            if cut:
                return  # the connection is gone: the service's later frames go nowhere
            if message["type"] == "http.response.body":
                body: bytes = message.get("body", b"")
                frames = body.split(b"\n\n")
                kept: list[bytes] = []
                for frame in frames:
                    if frame.startswith(b"id:") or b"\nid:" in frame:
                        if sent == self.events:
                            cut = True
                            break
                        sent += 1
                    kept.append(frame)
                if cut:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b"\n\n".join(kept) + (b"\n\n" if kept else b""),
                            "more_body": False,
                        }
                    )
                    return
            await send(message)

        return forward
