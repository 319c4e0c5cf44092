"""The coordinator side of the Tech Adapter API 2.2.0, over httpx.

Every failure ends as an ``AdapterError`` whose ``detail`` is stored on the task (see
``failures``): the status code, the adapter's ``userMessage``/``errors``/``detail``, ``moreInfo``
problems and solutions. Answers are untrusted: a body is read up to ``max_answer_bytes``, and
its data must be strict JSON that can be stored (``reading``), or the call fails, that task
alone. Transient faults are retried with bounded backoff; a provision or unprovision POST is
repeated only when the adapter cannot have processed it (the connection was refused, or it
answered 503). Status polls grow their interval and tolerate a bounded number of consecutive
failures (``_poll_once`` says which); a COMPLETED is believed only from a 200 answer to the POST
itself or to a poll of a token the adapter gave.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from provisioner import correlation
from provisioner.adapters.failures import (
    answer_error,
    error_body,
    gave_up,
    one_line,
    protocol_error,
    shown,
    too_large,
    transport_error,
    unreadable_reason,
)
from provisioner.adapters.pool import ShardedClient
from provisioner.adapters.reading import (
    Answer,
    AnswerTooLargeError,
    UnstorableAnswerError,
    load_answer,
    read_answer,
)
from provisioner.adapters.wire import (
    WireProvisioningStatus,
    WireReverseProvisioningStatus,
    WireValidationResult,
    WireValidationStatus,
    decode_token,
)
from provisioner.domain.privacy import without_private
from provisioner.domain.status import TaskAction
from provisioner.engine.ports import (
    JSON,
    Accepted,
    AdapterEndpoint,
    AdapterErrorKind,
    AdapterRequest,
    ProvisioningResult,
    ValidationOutcome,
)
from provisioner.errors import AdapterError, AdapterTransientError

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/plain"}
# Parts of a request body: shared bytes, or slices of them (see domain.rendering).
Body = tuple[bytes | memoryview, ...]
_PATHS = {TaskAction.PROVISION: "/v1/provision", TaskAction.UNPROVISION: "/v1/unprovision"}
MiB = 1024 * 1024
# Poll answers that say "not now" rather than "never": 404 is what an adapter that restarted and
# forgot the token (or a replica of it that never had the token) answers; the others ask the
# caller to come back later.
_POLL_AGAIN_STATUSES = frozenset({404, 408, 425, 429})


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Retry, polling, connection and answer-size settings."""

    retry_attempts: int = 5
    retry_max_seconds: float = 30.0
    poll_initial_seconds: float = 0.1
    poll_max_seconds: float = 10.0
    poll_multiplier: float = 1.5
    poll_error_budget: int = 10
    connect_timeout_seconds: float = 10.0
    poll_timeout_seconds: float = 30.0
    max_connections: int = 64
    max_answer_bytes: int = 16 * MiB


class ExchangeObserver(Protocol):
    """What the client reports of its HTTP exchanges with adapters (the service's metrics and
    adapter health implement it). Called on the event loop for every request: keep it cheap."""

    def exchange_started(self, endpoint: AdapterEndpoint) -> None:
        """A request is about to be sent."""
        ...

    def exchange_ended(
        self,
        endpoint: AdapterEndpoint,
        *,
        seconds: float,
        status_code: int | None,
        error: AdapterErrorKind | None,
        cause: str | None = None,
    ) -> None:
        """It ended after ``seconds``: answered ``status_code`` (None: no answer), failed as
        ``error`` (None: a usable answer, or the caller was cancelled), ``cause`` in brief."""
        ...

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        """An answer received whole turned out unusable (``protocol``)."""
        ...


class _Unobserved:
    def exchange_started(self, endpoint: AdapterEndpoint) -> None:
        return None

    def exchange_ended(
        self,
        endpoint: AdapterEndpoint,
        *,
        seconds: float,
        status_code: int | None,
        error: AdapterErrorKind | None,
        cause: str | None = None,
    ) -> None:
        return None

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        return None


@dataclass(frozen=True, slots=True)
class ReverseProvisioningOutcome:
    succeeded: bool
    updates: JSON
    logs: list[JSON]


class TechAdapterClient:
    """Talks to Tech Adapters; implements the engine's ``TechAdapterPort``."""

    def __init__(
        self,
        policy: ClientPolicy | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: ExchangeObserver | None = None,
    ) -> None:
        self._policy = policy or ClientPolicy()
        self._observer: ExchangeObserver = observer or _Unobserved()
        self._transport = transport
        self._clients: dict[tuple[str, tuple[tuple[str, str], ...]], ShardedClient] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # --- provision / unprovision ------------------------------------------------------------

    async def start(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ProvisioningResult | Accepted:
        """POST the request; a 200 is the result, a 202 a token to poll."""
        path = _PATHS[request.action]
        answer = await self._post(endpoint, path, _provisioning_body(request))
        if answer.status_code == 202:
            token = decode_token(answer.text)
            if token is None:
                raise self._invalid(endpoint, "POST", path, answer, "202 without a usable token")
            return Accepted(token)
        if answer.status_code == 200:
            status = self._parse(endpoint, "POST", path, answer, WireProvisioningStatus)
            if status.status == "RUNNING":
                raise self._invalid(endpoint, "POST", path, answer, "RUNNING without a token")
            return _result(status)
        raise _error(endpoint, "POST", path, answer)

    async def wait(self, endpoint: AdapterEndpoint, token: str) -> ProvisioningResult:
        """Poll ``GET /v1/provision/{token}/status`` until COMPLETED or FAILED."""
        path = f"/v1/provision/{quote(token, safe='')}/status"
        status = await self._poll(endpoint, path, WireProvisioningStatus)
        return _result(status)

    # --- validate, updateacl, reverse provisioning ------------------------------------------

    async def validate(
        self, endpoint: AdapterEndpoint, request: AdapterRequest
    ) -> ValidationOutcome:
        """``/v1/validate``, or ``/v2/validate`` with polling for adapters that ask for it."""
        body = _provisioning_body(request)
        if not endpoint.async_validation:
            answer = await self._post(endpoint, "/v1/validate", body, idempotent=True)
            if answer.status_code != 200:
                raise _error(endpoint, "POST", "/v1/validate", answer)
            result = self._parse(endpoint, "POST", "/v1/validate", answer, WireValidationResult)
            return _validation(result)
        answer = await self._post(endpoint, "/v2/validate", body, idempotent=True)
        if answer.status_code != 202:
            raise _error(endpoint, "POST", "/v2/validate", answer)
        token = decode_token(answer.text)
        if token is None:
            raise self._invalid(endpoint, "POST", "/v2/validate", answer, "no usable token")
        status = await self._poll(
            endpoint, f"/v2/validate/{quote(token, safe='')}/status", WireValidationStatus
        )
        outcome = status.outcome()
        if status.status == "FAILED" or outcome is None:
            return ValidationOutcome(False, ["the Tech Adapter could not validate the request"])
        return _validation(outcome)

    async def update_acl(
        self, endpoint: AdapterEndpoint, *, refs: list[str], request: str, result: str
    ) -> ProvisioningResult:
        """``/v1/updateacl`` with the ``provisionInfo`` of the component's last provision."""
        body = json.dumps({"refs": refs, "provisionInfo": {"request": request, "result": result}})
        answer = await self._post(endpoint, "/v1/updateacl", body.encode())
        if answer.status_code == 202:
            token = decode_token(answer.text)
            if token is None:
                raise self._invalid(endpoint, "POST", "/v1/updateacl", answer, "no token")
            return await self.wait(endpoint, token)
        if answer.status_code != 200:
            raise _error(endpoint, "POST", "/v1/updateacl", answer)
        return _result(
            self._parse(endpoint, "POST", "/v1/updateacl", answer, WireProvisioningStatus)
        )

    async def reverse_provision(
        self, endpoint: AdapterEndpoint, body: JSON
    ) -> ReverseProvisioningOutcome:
        """``/v1/reverse-provisioning``, polling its status when answered 202."""
        path = "/v1/reverse-provisioning"
        answer = await self._post(endpoint, path, json.dumps(body).encode(), idempotent=True)
        if answer.status_code == 202:
            token = decode_token(answer.text)
            if token is None:
                raise self._invalid(endpoint, "POST", path, answer, "no usable token")
            status = await self._poll(
                endpoint, f"{path}/{quote(token, safe='')}/status", WireReverseProvisioningStatus
            )
        elif answer.status_code == 200:
            status = self._parse(endpoint, "POST", path, answer, WireReverseProvisioningStatus)
        else:
            raise _error(endpoint, "POST", path, answer)
        return ReverseProvisioningOutcome(
            status.status == "COMPLETED",
            without_private(status.updates),
            without_private(status.logs, withhold_mentions=True),
        )

    # --- transport --------------------------------------------------------------------------

    def _client(self, endpoint: AdapterEndpoint) -> ShardedClient:
        key = (endpoint.url, tuple(sorted(endpoint.headers.items())))
        client = self._clients.get(key)
        if client is None:
            client = ShardedClient(
                base_url=endpoint.url,
                headers=endpoint.headers,
                capacity=min(
                    endpoint.max_concurrency or self._policy.max_connections,
                    self._policy.max_connections,
                ),
                timeout=httpx.Timeout(
                    None, connect=self._policy.connect_timeout_seconds, pool=None
                ),
                transport=self._transport,
            )
            self._clients[key] = client
        return client

    async def _send(
        self,
        client: ShardedClient,
        endpoint: AdapterEndpoint,
        method: str,
        path: str,
        **kwargs: Any,
    ) -> Answer:
        """One request, its answer read whole but never beyond ``max_answer_bytes``; it carries
        the correlation headers of the work it is made for (``X-Request-Id``, ``traceparent``)."""
        limit = self._policy.max_answer_bytes
        kwargs["headers"] = {**kwargs.get("headers", {}), **correlation.outgoing_headers()}
        observer = self._observer
        observer.exchange_started(endpoint)
        began = time.perf_counter()
        status: int | None = None
        error: AdapterErrorKind | None = None
        cause: str | None = None
        try:
            async with client.stream(method, path, **kwargs) as response:
                status = response.status_code
                try:
                    answer = await read_answer(response, limit=limit)
                except AnswerTooLargeError as exc:
                    error, cause = "protocol", "answer too large"
                    raise too_large(endpoint, method, path, exc) from None
        except httpx.HTTPError as exc:
            error, cause = _error_kind(exc), type(exc).__name__
            raise
        finally:
            if error is None and status is not None and status >= 400:
                error = "http"
            observer.exchange_ended(
                endpoint,
                seconds=time.perf_counter() - began,
                status_code=status,
                error=error,
                cause=cause,
            )
        return answer

    def _unusable(self, endpoint: AdapterEndpoint, error: AdapterError) -> AdapterError:
        """``error``, about an answer received whole but unusable, noted as a protocol error."""
        self._observer.adapter_error(endpoint, "protocol")
        return error

    def _invalid(
        self, endpoint: AdapterEndpoint, method: str, path: str, answer: Answer, what: str
    ) -> AdapterError:
        return self._unusable(endpoint, protocol_error(endpoint, method, path, answer, what))

    def _parse(
        self, endpoint: AdapterEndpoint, method: str, path: str, answer: Answer, model: type[Any]
    ) -> Any:
        try:
            return _parse(endpoint, method, path, answer, model)
        except AdapterError as exc:
            raise self._unusable(endpoint, exc) from None

    async def _post(
        self,
        endpoint: AdapterEndpoint,
        path: str,
        body: Body | bytes,
        *,
        idempotent: bool = False,
    ) -> Answer:
        """POST with bounded retries of what cannot have been processed (or is idempotent).

        A body given as parts is streamed with its Content-Length: the parts shared between
        requests are sent from where they are, never copied into one buffer per request.
        """
        client = self._client(endpoint)
        parts = (body,) if isinstance(body, bytes) else body
        headers = {**_JSON_HEADERS, "content-length": str(sum(len(part) for part in parts))}
        deadline = time.monotonic() + self._policy.retry_max_seconds
        for attempt in range(1, self._policy.retry_attempts + 1):
            try:
                answer = await self._send(
                    client, endpoint, "POST", path, content=_stream(parts), headers=headers
                )
            except httpx.HTTPError as exc:
                failure: AdapterError = transport_error(
                    endpoint, "POST", path, exc, idempotent=idempotent
                )
            else:
                if answer.status_code not in (502, 503, 504):
                    return answer
                failure = _error(endpoint, "POST", path, answer)
            # Send again only what the adapter cannot have acted on, or what is harmless twice.
            repeatable = isinstance(failure, AdapterTransientError) and (
                failure.not_processed or idempotent
            )
            delay = min(0.1 * 2 ** (attempt - 1), 2.0)
            last = attempt == self._policy.retry_attempts or time.monotonic() + delay > deadline
            if not repeatable or last:
                raise failure
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _poll(self, endpoint: AdapterEndpoint, path: str, model: type[Any]) -> Any:
        """GET ``path`` until the status is final; give up after too many failed polls."""
        client = self._client(endpoint)
        policy = self._policy
        interval, failures = policy.poll_initial_seconds, 0
        while True:
            await asyncio.sleep(interval)
            interval = min(interval * policy.poll_multiplier, policy.poll_max_seconds)
            try:
                status = await self._poll_once(client, endpoint, path, model)
            except AdapterTransientError as exc:
                failures += 1
                if failures >= policy.poll_error_budget:
                    raise gave_up(endpoint, path, failures, exc) from exc
                continue
            failures = 0
            if status.status != "RUNNING":
                return status

    async def _poll_once(
        self, client: ShardedClient, endpoint: AdapterEndpoint, path: str, model: type[Any]
    ) -> Any:
        """One status poll: the status read, ``AdapterTransientError`` for a failed poll that
        counts against the budget, ``AdapterError`` for an answer that ends the task at once.

        Counted: no answer (connection error, timeout); 5xx; 404, 408, 425 and 429; any other
        4xx without an error body the adapter wrote (a proxy's page, an empty body); a body
        that is not a readable status (a proxy's page on a 200). At once: any other 4xx with the
        adapter's own explanation (it is telling why polling is wrong), an answer too large,
        and a readable status holding values that cannot be stored (the next poll would say it
        again).
        """
        try:
            answer = await self._send(
                client,
                endpoint,
                "GET",
                path,
                headers=_JSON_HEADERS,
                timeout=self._policy.poll_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise transport_error(endpoint, "GET", path, exc) from exc
        if answer.status_code != 200:
            body = error_body(answer.content)
            error = answer_error(endpoint, "GET", path, answer, body)
            code = answer.status_code
            if 400 <= code < 500 and code not in _POLL_AGAIN_STATUSES and body is not None:
                raise error
            raise AdapterTransientError(error.message, detail=error.detail)
        try:
            return model.model_validate(load_answer(answer.content))
        except UnstorableAnswerError as exc:
            error = _unstorable(endpoint, "GET", path, answer, exc)
            raise self._unusable(endpoint, error) from None
        except ValueError as exc:  # not JSON, or not the status model
            error = self._unusable(
                endpoint,
                protocol_error(
                    endpoint, "GET", path, answer, f"unreadable answer ({unreadable_reason(exc)})"
                ),
            )
            raise AdapterTransientError(error.message, detail=error.detail) from None


def _provisioning_body(request: AdapterRequest) -> Body:
    """The ``ProvisioningRequest`` JSON as parts that share the operation's encoded texts."""
    parts = [
        b'{"descriptorKind":"%s","descriptor":' % request.descriptor_kind.encode(),
        *request.descriptor.json_parts(),
        b',"removeData":' + (b"true" if request.remove_data else b"false"),
    ]
    if request.latest_enriched_descriptor is not None:
        parts += [b',"latestEnrichedDescriptor":', *request.latest_enriched_descriptor.json_parts()]
    parts.append(b"}")
    return tuple(parts)


async def _stream(body: Body) -> AsyncIterator[bytes]:
    for part in body:
        # A slice is copied here once, for the time it is written (h11 would copy it anyway).
        yield part if isinstance(part, bytes) else bytes(part)


def _result(status: WireProvisioningStatus) -> ProvisioningResult:
    """The engine's result; what users will see (public info, logs, errors) has no privateInfo."""
    info = status.info
    public = without_private(info.public_info) if info else None
    private = info.private_info if info else None
    logs: list[JSON] = without_private(status.logs, withhold_mentions=True)
    if status.status == "COMPLETED":
        return ProvisioningResult(True, public, private, logs)
    errors: list[str] = shown(
        [
            one_line(str(log.get("message")))
            for log in logs
            if str(log.get("level", "")).upper() == "ERROR" and log.get("message")
        ]
    )
    result = one_line(shown(status.result)) if status.result else None
    error: JSON = {
        "message": "the Tech Adapter reported FAILED" + (f": {result}" if result else "")
    }
    if result:
        error["result"] = result
    if errors:
        error["errors"] = errors
    return ProvisioningResult(False, public, private, logs, error)


def _validation(result: WireValidationResult) -> ValidationOutcome:
    errors = list(result.error.errors or []) if result.error else []
    return ValidationOutcome(result.valid, shown(errors))


def _parse(
    endpoint: AdapterEndpoint, method: str, path: str, answer: Answer, model: type[Any]
) -> Any:
    """Strict, storable JSON (``load_answer``), then the wire model."""
    try:
        return model.model_validate(load_answer(answer.content))
    except UnstorableAnswerError as exc:
        raise _unstorable(endpoint, method, path, answer, exc) from None
    except ValueError as exc:  # not JSON, or not the model
        raise protocol_error(
            endpoint, method, path, answer, f"unreadable answer ({unreadable_reason(exc)})"
        ) from None


def _unstorable(
    endpoint: AdapterEndpoint, method: str, path: str, answer: Answer, exc: ValueError
) -> AdapterError:
    return protocol_error(endpoint, method, path, answer, f"the answer cannot be stored ({exc})")


def _error(endpoint: AdapterEndpoint, method: str, path: str, answer: Answer) -> AdapterError:
    return answer_error(endpoint, method, path, answer, error_body(answer.content))


def _error_kind(exc: httpx.HTTPError) -> AdapterErrorKind:
    """Timeouts; answers that cannot be decoded (protocol); any other failure on the wire, a
    connection refused, reset, or cut half-way through an answer (connection)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.DecodingError):
        return "protocol"
    return "connection"
