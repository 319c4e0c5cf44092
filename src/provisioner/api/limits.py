"""Limits every request meets before it is routed: the body size limit, enforced before and
while a body is read, and no NUL character in the path or query (no database stores one)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.api.problems import PROBLEM_JSON, TYPE_BASE
from provisioner.errors import PayloadTooLargeError


class RequestLimitsMiddleware:
    """Answers 413 at once when ``Content-Length`` is over the limit (a streamed body that
    grows past it makes reading it raise ``PayloadTooLargeError``, also answered 413), and 400
    when the path or the query holds a NUL character."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            await _refuse(
                send,
                400,
                "malformed-request",
                "Malformed request",
                "the path or the query contains a NUL character",
            )
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refuse(
                send,
                413,
                "payload-too-large",
                "Request body too large",
                f"request body exceeds the limit of {self.limit} bytes",
                close=True,
            )
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLargeError(self.limit)
            return message

        await self.app(scope, limited_receive, send)


async def _refuse(
    send: Send, status: int, slug: str, title: str, detail: str, *, close: bool = False
) -> None:
    body = json.dumps(
        {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:  # the body was not read: do not reuse the connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
