"""HTTP connections to one Tech Adapter, spread over small pools.

httpcore's pool looks at every connection for every queued request each time a request starts or
ends, so its cost grows with (requests in flight x connections). Measured here (httpx 0.28,
httpcore 1.0.9, 2 cores): a burst of 200 requests, 64 in flight over one pool of 64 kept-alive
connections, took 1.7 s of client CPU against a 0.2 s floor; the same burst over eight pools of
eight connections took 0.27 s. Each request goes to the least busy pool.
"""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

SHARD_SIZE = 8
# Idle connections are dropped well before common servers close them (uvicorn: 5 s): a POST
# written into a connection the server is closing fails in a way that looks like the adapter
# may have received it, and provisioning POSTs are not sent twice.
KEEPALIVE_SECONDS = 2.0


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every adapter connection, built once per process: each
    ``httpx.AsyncClient`` would otherwise load the trust store again (measured: 8 clients
    in 0.35 s with a context each, 0.09 s sharing one)."""
    return httpx.create_ssl_context()


class ShardedClient:
    """An ``httpx.AsyncClient`` per shard of at most ``SHARD_SIZE`` connections."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        capacity: int,
        timeout: httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # An injected transport (tests) has no pool to shard.
        shards = 1 if transport is not None else max(1, math.ceil(capacity / SHARD_SIZE))
        size = max(1, math.ceil(capacity / shards))
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=dict(headers),
                timeout=timeout,
                limits=httpx.Limits(
                    max_connections=size,
                    max_keepalive_connections=size,
                    keepalive_expiry=KEEPALIVE_SECONDS,
                ),
                transport=transport,
                verify=tls_context(),
            )
            for _ in range(shards)
        ]
        self._busy = [0] * shards

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """Send a request on the least busy shard; the body is read by the caller, as it wants
        (the adapter client bounds how much it reads)."""
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            async with self._clients[index].stream(method, url, **kwargs) as response:
                yield response
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
