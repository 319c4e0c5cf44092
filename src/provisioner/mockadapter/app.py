"""The mock adapter as a Starlette app: the Tech Adapter 2.2.0 routes and the `/mock/` control API.

Starlette rather than FastAPI: the mock sits in benchmarks and should cost the caller as little as
possible, so there is no request model validation or OpenAPI machinery in the way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from provisioner.mockadapter import answers
from provisioner.mockadapter.adapter import MockTechAdapter
from provisioner.mockadapter.answers import Answer
from provisioner.mockadapter.behaviour import Mode, ServerDefaults
from provisioner.mockadapter.errors import InvalidRequestError
from provisioner.mockadapter.marketplace import MarketplaceReceiver
from provisioner.mockadapter.state import CallAction, CallLog, CallRecord

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")
Handler = Callable[[_T, CallRecord], Awaitable[Answer]]


def create_mock_app(
    *,
    default_latency_ms: float = 0.0,
    default_mode: str = "sync",
    clock: Callable[[], float] = time.monotonic,
    marketplace_secret: str | None = None,
) -> Starlette:
    """Build the mock Tech Adapter, with a mock Market Plane at `/mock/marketplace/events`.

    `clock` (monotonic seconds) times async operations; tests pass a fake one. With a
    `marketplace_secret`, Market Plane deliveries must carry its HMAC signature. The adapter
    itself is `app.state.adapter` and the receiver `app.state.marketplace`, for in-process
    callers that want to look inside without HTTP.
    """
    adapter = MockTechAdapter(
        defaults=_server_defaults(default_latency_ms, default_mode), clock=clock
    )
    marketplace = MarketplaceReceiver(secret=marketplace_secret)
    app = Starlette(
        routes=[
            *_adapter_routes(adapter),
            *_control_routes(adapter),
            *_marketplace_routes(marketplace),
        ]
    )
    app.state.adapter = adapter
    app.state.marketplace = marketplace
    return app


def _server_defaults(latency_ms: float, mode: str) -> ServerDefaults:
    """Check the server-wide defaults; ValueError if they make no sense."""
    if mode not in Mode._value2member_map_:
        raise ValueError(f"default_mode must be 'sync' or 'async', not {mode!r}")
    if not 0 <= latency_ms < float("inf"):
        raise ValueError(f"default_latency_ms must be a finite number >= 0, not {latency_ms!r}")
    return ServerDefaults(latency_ms=float(latency_ms), mode=Mode(mode))


def _adapter_routes(adapter: MockTechAdapter) -> list[BaseRoute]:
    calls = adapter.calls
    return [
        _post("/v1/provision", CallAction.PROVISION, adapter.provision, calls),
        _post("/v1/unprovision", CallAction.UNPROVISION, adapter.unprovision, calls),
        _poll("/v1/provision/{token}/status", adapter.status, calls),
        _post("/v1/validate", CallAction.VALIDATE, adapter.validate, calls),
        _post("/v2/validate", CallAction.VALIDATE, adapter.validate_async, calls),
        _poll(
            "/v2/validate/{token}/status",
            adapter.validation_status,
            calls,
            CallAction.VALIDATE_STATUS,
        ),
        _post("/v1/updateacl", CallAction.UPDATEACL, adapter.update_acl, calls),
        _post(
            "/v1/reverse-provisioning",
            CallAction.REVERSE_PROVISIONING,
            adapter.reverse_provisioning,
            calls,
        ),
        _poll(
            "/v1/reverse-provisioning/{token}/status", adapter.reverse_provisioning_status, calls
        ),
    ]


def _post(path: str, action: CallAction, handler: Handler[bytes], calls: CallLog) -> Route:
    async def endpoint(request: Request) -> Response:
        call = calls.open(action)
        _correlate(call, request)
        answer = await _answer(handler, await request.body(), call)
        return _send(answer, call)

    return Route(path, endpoint, methods=["POST"])


def _poll(
    path: str, handler: Handler[str], calls: CallLog, action: CallAction = CallAction.STATUS
) -> Route:
    async def endpoint(request: Request) -> Response:
        call = calls.open(action)
        _correlate(call, request)
        call.token = token = request.path_params["token"]
        return _send(await _answer(handler, token, call), call)

    return Route(path, endpoint, methods=["GET"])


def _correlate(call: CallRecord, request: Request) -> None:
    call.request_id = request.headers.get("x-request-id")
    call.traceparent = request.headers.get("traceparent")


async def _answer(handler: Handler[_T], argument: _T, call: CallRecord) -> Answer:
    """Run a handler; its errors become answers here, at the edge."""
    try:
        return await handler(argument, call)
    except InvalidRequestError as exc:
        return answers.request_validation_error(exc.problems, exc.user_message, exc.status_code)
    except Exception:
        _log.exception("mock_adapter_handler_failed", action=call.action.value, seq=call.seq)
        return answers.system_error("Unexpected error in the mock adapter")


def _send(answer: Answer, call: CallRecord) -> Response:
    CallLog.close(call, answer.status_code)
    return _response(answer)


def _response(answer: Answer) -> Response:
    if answer.cut:
        return _CutResponse(
            answer.body, status_code=answer.status_code, media_type=answer.media_type
        )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


class _CutResponse(Response):
    """Sends the headers and half the body, then drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )
        raise ConnectionResetError("the mock adapter cut the connection (specific.mock.reset)")


def _control_routes(adapter: MockTechAdapter) -> list[BaseRoute]:
    """The `/mock/` API that tests use to look inside; not part of the Tech Adapter spec."""

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            adapter.calls.clear()
            return Response(status_code=204)
        wanted = request.query_params
        return _response(
            answers.json_answer(
                adapter.calls.to_json(wanted.get("action"), wanted.get("componentId"))
            )
        )

    async def components(request: Request) -> Response:
        return _response(answers.json_answer(adapter.components.to_json()))

    async def received(request: Request) -> Response:
        component_id = request.path_params["component_id"]
        record = adapter.components.find(component_id)
        if record is None:
            problem = f"componentId: the mock never received a request about {component_id!r}"
            return _response(
                answers.json_answer({"errors": [problem], "userMessage": "Unknown component"}, 404)
            )
        return _response(
            answers.json_answer({"componentId": component_id, "received": list(record.received)})
        )

    async def requests(request: Request) -> Response:
        wanted = request.query_params.get("componentId")
        recent = [item for item in adapter.requests if wanted in (None, item["componentId"])]
        return _response(answers.json_answer({"requests": recent}))

    async def forget_tokens(request: Request) -> Response:
        return _response(answers.json_answer({"forgotten": adapter.forget_tokens()}))

    async def gates(request: Request) -> Response:
        return _response(answers.json_answer(adapter.gates.to_json()))

    async def open_gate(request: Request) -> Response:
        name = request.path_params["name"]
        released = adapter.gates.open(name)
        return _response(answers.json_answer({"gate": name, "open": True, "released": released}))

    async def health(request: Request) -> Response:
        return _response(answers.json_answer({"status": "ok"}))

    return [
        Route("/mock/calls", calls, methods=["GET", "DELETE"]),
        Route("/mock/components", components, methods=["GET"]),
        Route("/mock/components/{component_id:path}/received", received, methods=["GET"]),
        Route("/mock/requests", requests, methods=["GET"]),
        Route("/mock/forget-tokens", forget_tokens, methods=["POST"]),
        Route("/mock/gates", gates, methods=["GET"]),
        Route("/mock/gates/{name}", open_gate, methods=["POST"]),
        Route("/mock/health", health, methods=["GET"]),
    ]


def _marketplace_routes(marketplace: MarketplaceReceiver) -> list[BaseRoute]:
    """The mock Market Plane: a webhook receiver and its controls."""

    async def events(request: Request) -> Response:
        if request.method == "POST":
            return _response(marketplace.receive(await request.body(), request.headers))
        if request.method == "DELETE":
            marketplace.clear()
            return Response(status_code=204)
        return _response(answers.json_answer(marketplace.to_json()))

    async def fail(request: Request) -> Response:
        try:
            return _response(marketplace.fail(await request.body()))
        except InvalidRequestError as exc:
            return _response(answers.request_validation_error(exc.problems, exc.user_message))

    return [
        Route("/mock/marketplace/events", events, methods=["GET", "POST", "DELETE"]),
        Route("/mock/marketplace/fail", fail, methods=["POST"]),
    ]
