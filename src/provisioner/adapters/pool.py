"""HTTP connections to one Tech Adapter, spread over small pools on the loop's own sockets.

httpcore's pool looks at every connection for every queued request each time a request starts or
ends, so its cost grows with (requests in flight x connections). Measured here (httpx 0.28,
httpcore 1.0.9, 2 cores): a burst of 200 requests, 64 in flight over one pool of 64 kept-alive
connections, took 1.7 s of client CPU against a 0.2 s floor; the same burst over eight pools of
eight connections took 0.27 s. Each request goes to the least busy pool.

Each pool reaches its sockets through ``network.AsyncioBackend`` rather than httpcore's anyio
default (see that module). httpx has no parameter for httpcore's network backend, so the pool
of the transport httpx builds is replaced by one made with it (``use_loop_sockets``); the
transport itself, and with it httpx's handling of proxies from the environment, stays httpx's.
httpx and httpcore are pinned in the lock files, and a test fails if the replacement stops
taking effect.
"""

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx

from provisioner.adapters.network import AsyncioBackend

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
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=KEEPALIVE_SECONDS
        )
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=dict(headers),
                timeout=timeout,
                limits=limits,
                transport=transport,
                verify=tls_context(),
            )
            for _ in range(shards)
        ]
        if transport is None:
            for client in self._clients:
                use_loop_sockets(client, limits)
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


def use_loop_sockets(client: httpx.AsyncClient, limits: httpx.Limits) -> None:
    """Give the transport httpx made for ``client`` a pool like its own (same limits, same TLS
    context) whose connections are ``AsyncioBackend``'s."""
    transport = client._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
