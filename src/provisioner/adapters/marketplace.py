"""Delivering release events to Market Planes over HTTP: the engine's ``MarketplacePort``.

Each event is POSTed as ``application/json`` with ``X-Provisioner-Event-Id`` (the receiver's
idempotency key: delivery is at least once) and ``X-Provisioner-Event``, and, when the Market
Plane has a secret, ``X-Provisioner-Signature: sha256=<hex HMAC-SHA256 of the body>``. A ``2xx``
answer acknowledges the event; anything else (another status, no answer within the time limit,
a connection error) is a failed attempt, described for people and retried later by the
publisher. Redirects are not followed: an event goes only where the registry says.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import httpx

from provisioner.adapters.failures import one_line, printable
from provisioner.adapters.pool import KEEPALIVE_SECONDS, tls_context
from provisioner.engine.ports import DeliveryOutcome, MarketplaceEndpoint

SIGNATURE_HEADER = "X-Provisioner-Signature"
EVENT_ID_HEADER = "X-Provisioner-Event-Id"
EVENT_HEADER = "X-Provisioner-Event"
_SHOWN_BYTES = 512  # of an error answer's body, kept in the delivery's last error


def signature(secret: str, body: bytes) -> str:
    """The ``X-Provisioner-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class MarketplaceClient:
    """One HTTP client for every Market Plane, made once per replica and closed at shutdown."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float = 10.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                timeout_seconds, connect=min(connect_timeout_seconds, timeout_seconds)
            ),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_SECONDS,
            ),
            follow_redirects=False,
            transport=transport,
            verify=tls_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(
        self, endpoint: MarketplaceEndpoint, body: bytes, *, event_id: str, event: str
    ) -> DeliveryOutcome:
        headers = {
            **endpoint.headers,
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id,
            EVENT_HEADER: event,
        }
        if endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = signature(endpoint.secret, body)
        try:
            # The whole exchange is bounded, not each read: a receiver trickling its answer
            # byte by byte does not hold the delivery for longer.
            async with asyncio.timeout(self._timeout):
                return await self._post(endpoint, body, headers)
        except TimeoutError:
            return DeliveryOutcome(
                False,
                error=f"no answer from {endpoint.url} within {self._timeout:g} s",
                failure="timeout",
            )
        except httpx.HTTPError as exc:
            cause = printable(one_line(f"{type(exc).__name__}: {exc}"), limit=_SHOWN_BYTES)
            return DeliveryOutcome(
                False, error=f"cannot deliver to {endpoint.url} ({cause})", failure="connection"
            )

    async def _post(
        self, endpoint: MarketplaceEndpoint, body: bytes, headers: dict[str, str]
    ) -> DeliveryOutcome:
        async with self._client.stream(
            "POST", endpoint.url, content=body, headers=headers
        ) as response:
            if response.is_success:
                return DeliveryOutcome(True, response.status_code)
            shown = await _start_of(response)
        message = f"{endpoint.url} answered {response.status_code}"
        if shown:
            message += f": {shown}"
        return DeliveryOutcome(False, response.status_code, message, failure="http")


async def _start_of(response: httpx.Response) -> str:
    """The first bytes of an error answer, as one printable line."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= _SHOWN_BYTES:
            break
    return printable(one_line(kept[:_SHOWN_BYTES].decode("utf-8", errors="replace")))
