"""The coordinator side of the Tech Adapter API 2.2.0, over httpx.

Every failure ends as an ``AdapterError`` whose ``detail`` is stored on the task: the status
code, the adapter's ``userMessage``/``errors``, ``moreInfo`` problems and solutions. Transient
faults are retried with bounded backoff; a provision or unprovision POST is repeated only when
the adapter cannot have processed it (the connection was refused, or it answered 503). Status
polls grow their interval and tolerate a bounded number of consecutive failures; a COMPLETED is
believed only from a 200 answer to the POST itself or to a poll of a token the adapter gave.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from provisioner.adapters.pool import ShardedClient
from provisioner.adapters.wire import (
    WireError,
    WireProvisioningStatus,
    WireReverseProvisioningStatus,
    WireValidationResult,
    WireValidationStatus,
    decode_token,
)
from provisioner.domain.privacy import PRIVATE_KEY, without_private
from provisioner.domain.status import TaskAction
from provisioner.engine.ports import (
    JSON,
    Accepted,
    AdapterEndpoint,
    AdapterRequest,
    ProvisioningResult,
)
from provisioner.errors import AdapterError, AdapterTransientError

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/plain"}
Body = tuple[bytes, ...]
_PATHS = {TaskAction.PROVISION: "/v1/provision", TaskAction.UNPROVISION: "/v1/unprovision"}


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """Retry, polling and connection settings."""

    retry_attempts: int = 5
    retry_max_seconds: float = 30.0
    poll_initial_seconds: float = 0.1
    poll_max_seconds: float = 10.0
    poll_multiplier: float = 1.5
    poll_error_budget: int = 10
    connect_timeout_seconds: float = 10.0
    poll_timeout_seconds: float = 30.0
    max_connections: int = 64


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    valid: bool
    errors: list[str]


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
    ) -> None:
        self._policy = policy or ClientPolicy()
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
        response = await self._post(endpoint, path, _provisioning_body(request))
        if response.status_code == 202:
            token = decode_token(response.text)
            if token is None:
                raise _protocol_error(
                    endpoint, "POST", path, response, "202 without a usable token"
                )
            return Accepted(token)
        if response.status_code == 200:
            status = _parse_status(endpoint, "POST", path, response)
            if status.status == "RUNNING":
                raise _protocol_error(endpoint, "POST", path, response, "RUNNING without a token")
            return _result(status)
        raise _answer_error(endpoint, "POST", path, response)

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
            response = await self._post(endpoint, "/v1/validate", body, idempotent=True)
            if response.status_code != 200:
                raise _answer_error(endpoint, "POST", "/v1/validate", response)
            result = _parse(endpoint, "POST", "/v1/validate", response, WireValidationResult)
            return _validation(result)
        response = await self._post(endpoint, "/v2/validate", body, idempotent=True)
        if response.status_code != 202:
            raise _answer_error(endpoint, "POST", "/v2/validate", response)
        token = decode_token(response.text)
        if token is None:
            raise _protocol_error(endpoint, "POST", "/v2/validate", response, "no usable token")
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
        response = await self._post(endpoint, "/v1/updateacl", body.encode())
        if response.status_code == 202:
            token = decode_token(response.text)
            if token is None:
                raise _protocol_error(endpoint, "POST", "/v1/updateacl", response, "no token")
            return await self.wait(endpoint, token)
        if response.status_code != 200:
            raise _answer_error(endpoint, "POST", "/v1/updateacl", response)
        return _result(_parse_status(endpoint, "POST", "/v1/updateacl", response))

    async def reverse_provision(
        self, endpoint: AdapterEndpoint, body: JSON
    ) -> ReverseProvisioningOutcome:
        """``/v1/reverse-provisioning``, polling its status when answered 202."""
        path = "/v1/reverse-provisioning"
        response = await self._post(endpoint, path, json.dumps(body).encode(), idempotent=True)
        if response.status_code == 202:
            token = decode_token(response.text)
            if token is None:
                raise _protocol_error(endpoint, "POST", path, response, "no usable token")
            status = await self._poll(
                endpoint, f"{path}/{quote(token, safe='')}/status", WireReverseProvisioningStatus
            )
        elif response.status_code == 200:
            status = _parse(endpoint, "POST", path, response, WireReverseProvisioningStatus)
        else:
            raise _answer_error(endpoint, "POST", path, response)
        return ReverseProvisioningOutcome(status.status == "COMPLETED", status.updates, status.logs)

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

    async def _post(
        self,
        endpoint: AdapterEndpoint,
        path: str,
        body: Body | bytes,
        *,
        idempotent: bool = False,
    ) -> httpx.Response:
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
                response = await client.request(
                    "POST", path, content=_stream(parts), headers=headers
                )
            except httpx.HTTPError as exc:
                failure: AdapterError = _transport_error(
                    endpoint, "POST", path, exc, idempotent=idempotent
                )
            else:
                if response.status_code not in (502, 503, 504):
                    return response
                failure = _answer_error(endpoint, "POST", path, response)
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
                response = await client.request(
                    "GET", path, headers=_JSON_HEADERS, timeout=policy.poll_timeout_seconds
                )
                if response.status_code != 200:
                    raise _answer_error(endpoint, "GET", path, response)
                status = _parse(endpoint, "GET", path, response, model)
            except (httpx.HTTPError, AdapterError) as exc:
                failures += 1
                if failures >= policy.poll_error_budget:
                    raise _gave_up(endpoint, path, failures, exc) from exc
                continue
            failures = 0
            if status.status != "RUNNING":
                return status


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
        yield part


def _result(status: WireProvisioningStatus) -> ProvisioningResult:
    info = status.info
    public = info.public_info if info else None
    private = info.private_info if info else None
    if status.status == "COMPLETED":
        return ProvisioningResult(True, public, private, status.logs)
    errors = [
        str(log.get("message"))
        for log in status.logs
        if str(log.get("level", "")).upper() == "ERROR" and log.get("message")
    ]
    error: JSON = {
        "message": "the Tech Adapter reported FAILED"
        + (f": {status.result}" if status.result else "")
    }
    if status.result:
        error["result"] = status.result
    if errors:
        error["errors"] = errors
    return ProvisioningResult(False, public, private, status.logs, error)


def _validation(result: WireValidationResult) -> ValidationOutcome:
    errors = list(result.error.errors or []) if result.error else []
    return ValidationOutcome(result.valid, errors)


def _parse(
    endpoint: AdapterEndpoint, method: str, path: str, response: httpx.Response, model: type[Any]
) -> Any:
    """Strict JSON (no NaN or Infinity: nothing could store them), then the wire model."""
    try:
        data = json.loads(response.content, parse_constant=_not_json)
        return model.model_validate(data)
    except ValueError as exc:  # JSONDecodeError, ValidationError, a non-finite number
        if isinstance(exc, ValidationError):
            errors = exc.errors()
            reason = errors[0].get("msg", "invalid body") if errors else "invalid body"
        else:
            reason = str(exc).splitlines()[0]
        raise _protocol_error(
            endpoint, method, path, response, f"unreadable answer ({reason})"
        ) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _parse_status(
    endpoint: AdapterEndpoint, method: str, path: str, response: httpx.Response
) -> WireProvisioningStatus:
    status: WireProvisioningStatus = _parse(
        endpoint, method, path, response, WireProvisioningStatus
    )
    return status


def _base_detail(endpoint: AdapterEndpoint, method: str, path: str) -> JSON:
    return {"adapter": endpoint.infrastructure_template_id, "request": f"{method} {path}"}


def _answer_error(
    endpoint: AdapterEndpoint, method: str, path: str, response: httpx.Response
) -> AdapterError:
    """An error answer (4xx, 5xx): the adapter's own explanation where it gives one."""
    detail = _base_detail(endpoint, method, path)
    detail["statusCode"] = response.status_code
    try:
        body = WireError.model_validate_json(response.content)
    except ValidationError:
        body = None
        if response.content:
            detail["body"] = _shown_body(response)
    summary = None
    if body is not None:
        detail.update(body.detail())
        summary = body.summary()
    message = (
        f"{endpoint.infrastructure_template_id} answered {response.status_code} to {method} {path}"
    )
    if summary:
        message += f": {summary}"
    if response.status_code in (502, 503, 504):
        return AdapterTransientError(
            message, detail=detail, not_processed=response.status_code == 503
        )
    return AdapterError(message, detail=detail)


def _protocol_error(
    endpoint: AdapterEndpoint, method: str, path: str, response: httpx.Response, what: str
) -> AdapterError:
    detail = _base_detail(endpoint, method, path)
    detail["statusCode"] = response.status_code
    detail["contentType"] = response.headers.get("content-type")
    detail["body"] = _shown_body(response)
    return AdapterError(
        f"{endpoint.infrastructure_template_id} gave an invalid answer to {method} {path}: {what}",
        detail=detail,
    )


def _shown_body(response: httpx.Response, *, limit: int = 2000) -> str:
    """An answer's body for an error report, without any ``privateInfo`` in it.

    Errors are stored and shown by the API, which never shows adapters' private info: a JSON
    body is shown without it; another body that mentions it is withheld.
    """
    try:
        data = json.loads(response.content)
    except ValueError:
        text = response.text
        if PRIVATE_KEY.lower() in text.lower():
            return "(the body is withheld: it mentions privateInfo)"
        return text[:limit]
    return json.dumps(without_private(data), ensure_ascii=False)[:limit]


def _transport_error(
    endpoint: AdapterEndpoint,
    method: str,
    path: str,
    exc: httpx.HTTPError,
    *,
    idempotent: bool = True,
) -> AdapterTransientError:
    """A failure on the wire: before the connection was made (the adapter cannot have seen
    the request), or after (it may have)."""
    detail = _base_detail(endpoint, method, path)
    detail["cause"] = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return AdapterTransientError(
            f"cannot reach {endpoint.infrastructure_template_id} at {endpoint.url} "
            f"({type(exc).__name__}: {exc})",
            detail=detail,
            not_processed=True,
        )
    message = (
        f"{endpoint.infrastructure_template_id} connection failed during {method} {path} "
        f"({type(exc).__name__})"
    )
    if not idempotent:
        message += "; the adapter may have received the request, so it was not sent again"
    return AdapterTransientError(message, detail=detail, not_processed=False)


def _gave_up(endpoint: AdapterEndpoint, path: str, failures: int, exc: Exception) -> AdapterError:
    last = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
    detail = _base_detail(endpoint, "GET", path)
    detail["consecutiveFailures"] = failures
    detail["lastError"] = last
    return AdapterError(
        f"lost track of the operation at {endpoint.infrastructure_template_id}: {failures} "
        f"status polls failed in a row (last: {last})",
        detail=detail,
    )
