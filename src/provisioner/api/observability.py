"""What every request gets before anything else: its correlation (request id and trace, bound
for the log lines and adapter calls made for it, and echoed as ``X-Request-Id``) and its line in
the HTTP metrics (route template, status, time to the start of the answer)."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner import correlation
from provisioner.telemetry.metrics import Metrics

UNMATCHED = "<unmatched>"  # the route label of a path no route serves (bounded: one value)


class ObservabilityMiddleware:
    """Binds the request's correlation; echoes its id; measures the answer."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = traceparent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        current = correlation.for_request(request_id, traceparent)
        # Not undone afterwards: each request runs in an asyncio task of its own, whose
        # context ends with it; the error handler outside this middleware still sees them.
        correlation.bind(current)
        structlog.contextvars.bind_contextvars(
            request_id=current.request_id, trace_id=current.trace_id
        )
        echoed = (b"x-request-id", current.request_id.encode("latin-1"))
        began = time.perf_counter()
        measured = False

        def measure(status: int) -> None:
            nonlocal measured
            if not measured:
                measured = True
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                seconds = time.perf_counter() - began
                self.metrics.http_request(scope["method"], route, status, seconds)

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echoed]
                measure(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except BaseException:
            measure(500)  # the server answers 500 for what failed before answering
            raise
