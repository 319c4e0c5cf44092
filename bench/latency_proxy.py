"""A TCP proxy that puts a network between the service and its database, for the benchmarks.

    python bench/latency_proxy.py --listen 45999 --target 5432 --delay-ms 1 &
    export PROVISIONER_BENCH_POSTGRES_URL=\\
        'postgresql+asyncpg://postgres@127.0.0.1:45999/postgres?ssl=disable'
    .venv/bin/python bench/run.py --db postgres --workloads chain,wide

On loopback a PostgreSQL round trip costs about 30 µs, so the number of round trips a write
takes hardly shows; a production database is on another host. Every chunk from the client is
forwarded ``--delay-ms`` later (the event loop's timers have millisecond resolution), answers
at once: each round trip costs that much more. Runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
    except ConnectionError:
        pass
    finally:
        await asyncio.sleep(delay)  # what is still delayed goes out first
        writer.close()


async def _serve(listen: int, target: int, delay: float) -> None:
    async def connection(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        server_reader, server = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            _forward(client_reader, server, delay), _forward(server_reader, client, 0.0)
        )

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=45999)
    parser.add_argument("--target", type=int, default=5432)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.listen, args.target, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
