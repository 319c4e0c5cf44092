"""The adapter client's network backend (``provisioner.adapters.network``) against real servers on
loopback: bodies larger than every buffer both ways, keep-alive and a server that closes idle
connections, refused and reset connections, timeouts, and TLS with a certificate that is trusted
or not. Requests go through ``ShardedClient``, as the adapter client sends them."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner.adapters.network import HIGH_WATER, AsyncioBackend
from provisioner.adapters.pool import ShardedClient
from tests.support import wait_until

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
NO_TIMEOUT = httpx.Timeout(None, connect=10.0)


@asynccontextmanager
async def serving(
    handler: Handler, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server on a free loopback port: its base URL and the connections it accepted."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted) + 1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://localhost:{port}" if tls else f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request's body (its headers read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


def response(body: bytes, *, close: bool = False) -> bytes:
    headers = f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n"
    if close:
        headers += "connection: close\r\n"
    return headers.encode() + b"\r\n" + body


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every request on the connection with its own body, kept alive."""
    while True:
        try:
            body = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(response(body))
        await writer.drain()


def sharded(url: str, *, timeout: httpx.Timeout = NO_TIMEOUT, capacity: int = 8) -> ShardedClient:
    return ShardedClient(base_url=url, headers={}, capacity=capacity, timeout=timeout)


async def post(client: ShardedClient, body: bytes) -> bytes:
    async with client.stream("POST", "/v1/provision", content=body) as answer:
        assert answer.status_code == 200
        return await answer.aread()


def test_every_shard_of_an_adapter_pool_uses_the_loop_sockets_backend() -> None:
    """httpx offers no parameter for it: if an httpx or httpcore upgrade stops the pool
    replacement from taking effect, this fails rather than the service quietly slowing down."""
    client = sharded("http://127.0.0.1:1", capacity=64)
    pools = [shard._transport._pool for shard in client._clients]
    assert len(pools) == 8
    assert all(isinstance(pool._network_backend, AsyncioBackend) for pool in pools)
    assert all(pool._max_connections == 8 for pool in pools)


async def test_bodies_larger_than_the_buffers_go_both_ways_whole() -> None:
    """A request body many times the transport's write buffer waits for it to drain; an answer
    many times the read buffer pauses reading and resumes it as httpcore consumes it."""
    body = bytes(range(256)) * (16 * HIGH_WATER // 256)  # 4 MiB
    async with serving(echo) as (url, accepted):
        client = sharded(url)
        try:
            assert await post(client, body) == body
            assert await post(client, b"small") == b"small"
        finally:
            await client.aclose()
    assert accepted == [1]  # the second request reused the kept-alive connection


async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one request, then close the connection without saying so beforehand."""
    body = await read_request(reader)
    writer.write(response(body))
    await writer.drain()


async def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool learns of the server's close from the connection's end (``is_readable``), not
    from its keep-alive expiry (made an hour here), and opens a new one for the next request."""
    monkeypatch.setattr("provisioner.adapters.pool.KEEPALIVE_SECONDS", 3600.0)
    async with serving(answer_once) as (url, accepted):
        client = sharded(url)
        try:
            assert await post(client, b"first") == b"first"
            pool = client._clients[0]._transport._pool

            async def noticed() -> bool:  # closed by the pool already, or found unusable
                return all(connection.has_expired() for connection in pool.connections)

            await wait_until(noticed)
            assert await post(client, b"second") == b"second"
        finally:
            await client.aclose()
    assert accepted == [1, 2]


async def test_reading_pauses_while_an_answer_waits_and_resumes_as_it_is_read() -> None:
    """An answer larger than the buffer stops the transport reading (the rest waits in the
    kernel and the server), and reading resumes as httpcore takes the bytes."""
    size = 16 * 1024 * 1024

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(b"\2" * size))
        await writer.drain()

    async with serving(flood) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
        try:
            await stream.write(b"GET / HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n")
            connection = stream._connection

            async def paused() -> bool:
                return connection.reading_paused

            await wait_until(paused)
            assert HIGH_WATER < connection.buffered <= 2 * HIGH_WATER  # one read beyond, at most
            expected = response(b"\2" * size)
            received = bytearray()
            while len(received) < len(expected):
                chunk = await stream.read(1024 * 1024)
                assert chunk, "the connection ended early"
                received += chunk
            assert received == expected
            assert not connection.reading_paused
        finally:
            await stream.aclose()


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = sharded(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(httpx.ConnectError):
            await post(client, b"x")
    finally:
        await client.aclose()


async def test_no_connection_within_the_connect_timeout_is_a_connect_timeout() -> None:
    with pytest.raises(httpcore.ConnectTimeout):
        await AsyncioBackend().connect_tcp("127.0.0.1", 9, timeout=0)


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    never = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await never.wait()

    async with serving(silent) as (url, _):
        client = sharded(url, timeout=httpx.Timeout(None, connect=10.0, read=0.2))
        try:
            with pytest.raises(httpx.ReadTimeout):
                await post(client, b"x")
        finally:
            never.set()
            await client.aclose()


async def test_a_body_the_server_never_reads_is_a_write_timeout() -> None:
    never = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    async with serving(deaf) as (url, _):
        client = sharded(url, timeout=httpx.Timeout(None, connect=10.0, write=0.5))
        try:
            with pytest.raises(httpx.WriteTimeout):
                await post(client, b"\0" * (64 * 1024 * 1024))  # beyond the socket buffers
        finally:
            never.set()
            await client.aclose()


async def test_a_connection_reset_during_the_answer_is_a_read_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a clean close

    async with serving(reset) as (url, _):
        client = sharded(url)
        try:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await post(client, b"x")
        finally:
            await client.aclose()


# --- TLS ----------------------------------------------------------------------------------------


def certificate(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for localhost: the server's context, and a client context that
    trusts it and checks host names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls_to_a_trusted_certificate_carries_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_tls, client_tls = certificate(tmp_path)
    monkeypatch.setattr("provisioner.adapters.pool.tls_context", lambda: client_tls)
    body = b"\1" * (3 * HIGH_WATER)
    async with serving(echo, tls=server_tls) as (url, accepted):
        client = sharded(url)
        try:
            assert await post(client, body) == body
            assert await post(client, b"again") == b"again"
        finally:
            await client.aclose()
    assert accepted == [1]


async def test_tls_to_an_untrusted_certificate_is_a_connect_error(tmp_path: Path) -> None:
    server_tls, _ = certificate(tmp_path)  # the pool trusts the system's authorities only
    async with serving(echo, tls=server_tls) as (url, _):
        client = sharded(url)
        try:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(client, b"x")
        finally:
            await client.aclose()
