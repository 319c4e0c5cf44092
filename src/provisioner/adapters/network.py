"""httpcore's network layer on the running asyncio loop's own transports, without anyio.

httpcore reaches sockets through a *network backend*. Its default under asyncio goes through
anyio streams, and every socket operation pays for that: a cancel scope with a timer
(``fail_after``), an exception-mapping context manager, a checkpoint on every send, and, each
time the pool looks for a connection to use, a ``poll()`` of every idle connection's socket to
learn whether the server closed it (``get_extra_info("is_readable")``). Measured here (httpx
0.28, httpcore 1.0.9, uvloop, 2 cores), the adapter client's CPU per request fell by about a
third without it (``docs/decisions.md``, "Adapter client").

``AsyncioBackend`` is an ``asyncio.Protocol`` per connection: received bytes wait in a buffer
until httpcore reads them, a write hands its bytes to the transport and waits only when the
transport asks it to (flow control), and whether an idle connection was closed by the server is
the protocol's own state. A timeout, when httpcore gives one, is one loop timer. Errors are
httpcore's exceptions (``ConnectError``, ``ReadTimeout``...), so httpx maps them to its own as
it maps the default backend's. TLS goes through ``loop.start_tls``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore

# Received bytes held for httpcore before the transport stops reading; it resumes below LOW.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class _Connection(asyncio.Protocol):
    """One connection's receive buffer, its end, and write flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.ended = False  # the server closed its side, or the connection was lost
        self.error: BaseException | None = None  # why it was lost, unless closed cleanly
        self.reading_paused = False
        self._writing_paused = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport:
            self.transport.pause_reading()
            self.reading_paused = True
        _wake(self._reader)

    def eof_received(self) -> bool:
        self.ended = True
        _wake(self._reader)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        _wake(self._reader)
        _wake(self._writer)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        _wake(self._writer)

    @property
    def must_wait_to_read(self) -> bool:
        return not self.chunks and not self.ended

    @property
    def must_wait_to_write(self) -> bool:
        return self._writing_paused and not self.ended

    async def received(self) -> None:
        """Until bytes are buffered or the stream has ended."""
        self._reader = asyncio.get_running_loop().create_future()
        try:
            await self._reader
        finally:
            self._reader = None

    async def drained(self) -> None:
        """Until the transport takes writes again, or the connection is lost."""
        while self.must_wait_to_write:
            self._writer = asyncio.get_running_loop().create_future()
            try:
                await self._writer
            finally:
                self._writer = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection

    # The methods below are httpcore's interface, timeout parameters included (ASYNC109).

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        connection = self._connection
        if connection.must_wait_to_read:
            try:
                async with asyncio.timeout(timeout):
                    await connection.received()
            except TimeoutError:
                raise httpcore.ReadTimeout(f"nothing received within {timeout:g} s") from None
        if connection.chunks:
            chunk = connection.chunks.popleft()
            if len(chunk) > max_bytes:
                connection.chunks.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            connection.buffered -= len(chunk)
            if connection.reading_paused and connection.buffered < LOW_WATER:
                connection.reading_paused = False
                self._transport.resume_reading()
            return chunk
        if connection.error is not None:
            raise httpcore.ReadError(str(connection.error)) from connection.error
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        connection = self._connection
        if connection.ended or self._transport.is_closing():
            raise httpcore.WriteError(str(connection.error or "the connection is closed"))
        self._transport.write(buffer)
        if connection.must_wait_to_write:
            try:
                async with asyncio.timeout(timeout):
                    await connection.drained()
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not write within {timeout:g} s") from None
        if connection.error is not None:
            raise httpcore.WriteError(str(connection.error)) from connection.error

    async def aclose(self) -> None:
        # As the anyio backend does: what is still unsent is dropped (httpcore closes a
        # connection when it is done with it, or broken), and the socket is closed once the
        # loop has run the transport's ``connection_lost``.
        self._transport.abort()
        await asyncio.sleep(0)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._connection, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout:g} s") from None
        except OSError as exc:  # a certificate refused too (ssl.SSLError)
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._connection.transport = transport
        return AsyncioStream(transport, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of idle connections: anything received, or the end, makes it unusable.
            return self._connection.ended or bool(self._connection.chunks)
        if info in ("ssl_object", "socket"):
            return self._transport.get_extra_info(info)
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections made by the running loop (``loop.create_connection``)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"not connected within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        for option in socket_options or ():  # asyncio sets TCP_NODELAY itself
            transport.get_extra_info("socket").setsockopt(*option)
        return AsyncioStream(transport, connection)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
