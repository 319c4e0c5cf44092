"""Waiting for an operation: its events as they happen, shown as a live table on a terminal
or as plain lines elsewhere, until it ends, the client's ``--timeout`` passes, or Ctrl-C.

Events come from ``GET /v1/operations/{id}/events`` as Server-Sent Events; a dropped stream is
resumed after the last event seen (nothing lost or repeated), and a server that cannot stream
(``503`` at capacity, or a JSON answer) is polled instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.http import Server, path_part, refusal
from provisioner.cli.render import clean, event_line, event_note, summary, table

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
POLL_SECONDS = 0.5
# The server sends a keep-alive every 15 s: a stream silent for this long is dead.
SILENT_STREAM_SECONDS = 60.0
# How long the server may be out of reach before a wait gives up on it.
CONTACT_SECONDS = 60.0


class Progress(Protocol):
    """Where a wait shows what happens."""

    def begin(self, operation: dict[str, Any]) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...
    def end(self, operation: dict[str, Any]) -> None: ...


class Silent:
    """Shows nothing (``-o json`` prints the final operation only)."""

    def begin(self, operation: dict[str, Any]) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def end(self, operation: dict[str, Any]) -> None:
        pass


@dataclass
class Lines:
    """One line per transition, then a summary: for logs, files and pipelines."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)

    def begin(self, operation: dict[str, Any]) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        line = event_line(event)
        if line is not None:
            print(line, file=self.out, flush=True)

    def end(self, operation: dict[str, Any]) -> None:
        for line in summary(operation):
            print(line, file=self.out)


@dataclass
class _Row:
    status: str
    started: datetime | None = None
    finished: datetime | None = None
    message: str = ""

    def elapsed(self) -> str:
        if self.started is None:
            return "-"
        seconds = max(((self.finished or datetime.now(UTC)) - self.started).total_seconds(), 0)
        return (
            f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
        )


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class Board:
    """A live table on a terminal: each component with its status, elapsed time and the
    adapter's last message, redrawn as events arrive (and every quarter second, for the
    clocks)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._rows: dict[str, _Row] = {}
        self._status = "PENDING"
        self._live: Live | None = None

    def begin(self, operation: dict[str, Any]) -> None:
        self._status = operation["status"]
        for task in operation.get("tasks") or []:
            error = (task.get("error") or {}).get("message")
            self._rows[task["componentId"]] = _Row(
                task["status"],
                _moment(task.get("startedAt")),
                _moment(task.get("finishedAt")),
                clean(error) if error else "",
            )
        self._live = Live(self, console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def event(self, event: dict[str, Any]) -> None:
        component, new = event.get("componentId"), str(event.get("newStatus"))
        if component is None:
            self._status = new
        else:
            row = self._rows.setdefault(component, _Row(new))
            detail = event.get("detail") or {}
            if "validation" not in detail:
                row.status = new
            if new == "RUNNING" and "token" not in detail:
                row.started, row.finished = _moment(event.get("at")), None
            elif new in TERMINAL or new == "SKIPPED":
                row.finished = _moment(event.get("at"))
            note = event_note(detail)
            if "token" in detail:
                note = "polling the adapter"
            elif isinstance(detail.get("validation"), dict):
                valid = detail["validation"].get("valid")
                note = "valid" if valid else f"invalid: {note}"
            if note:
                row.message = note
        if self._live is not None:
            self._live.refresh()

    def end(self, operation: dict[str, Any]) -> None:
        self._status = operation["status"]
        self.close()
        for line in summary(operation):
            self._console.print(line)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __rich__(self) -> Table:
        rows = [
            (component, row.status, row.elapsed(), row.message)
            for component, row in self._rows.items()
        ]
        headers = ("COMPONENT", "STATUS", "ELAPSED", "MESSAGE")
        grid = table(headers, rows, flexible=3, width=self._console.width)
        grid.title = f"operation {self._status}"
        grid.title_justify = "left"
        return grid


def wait_for(
    server: Server, operation: dict[str, Any], *, progress: Progress, timeout: float | None
) -> dict[str, Any]:
    """Follow ``operation`` until it ends; the operation as it ended.

    ``CommandError``: ``TIMEOUT`` when ``timeout`` passes, ``INTERRUPTED`` on Ctrl-C (the
    operation goes on in both cases, and the message says how to follow or cancel it)."""
    operation_id = clean(operation["id"])
    goes_on = (
        f"follow it: provisioner wait {operation_id}",
        f"cancel it: provisioner cancel {operation_id}",
    )
    progress.begin(operation)
    try:
        final = asyncio.run(_follow(server, operation, progress, timeout))
    except TimeoutError:
        _close(progress)
        raise CommandError(
            Exit.TIMEOUT,
            f"gave up waiting after {timeout:g} s: operation {operation_id} goes on",
            *goes_on,
        ) from None
    except KeyboardInterrupt:
        _close(progress)
        raise CommandError(
            Exit.INTERRUPTED, f"stopped waiting: operation {operation_id} goes on", *goes_on
        ) from None
    except BaseException:
        _close(progress)
        raise
    progress.end(final)
    return final


def _close(progress: Progress) -> None:
    if isinstance(progress, Board):
        progress.close()


async def _follow(
    server: Server, operation: dict[str, Any], progress: Progress, limit: float | None
) -> dict[str, Any]:
    operation_id = operation["id"]
    timeouts = httpx.Timeout(30.0, read=SILENT_STREAM_SECONDS)
    async with (
        asyncio.timeout(limit),
        httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=timeouts) as client,
    ):
        events = _Events(client, operation_id)
        if operation["status"] not in TERMINAL:
            async for event in events.all():
                progress.event(event)
        return await events.operation()


class _Events:
    """An operation's events from ``after`` on: streamed, resumed, or polled."""

    def __init__(self, client: httpx.AsyncClient, operation_id: str) -> None:
        self._client = client
        self._path = f"/v1/operations/{path_part(operation_id)}/events"
        self._operation_id = operation_id
        self.after = 0
        self._lost_since: float | None = None

    async def all(self) -> AsyncIterator[dict[str, Any]]:
        """Every event until the operation's end."""
        streaming = True
        while True:
            try:
                if streaming:
                    outcome = await self._stream()
                    async for event in outcome.events:
                        yield event
                    if outcome.ended:
                        return
                    streaming = outcome.can_stream
                else:
                    ended = False
                    for event in await self._page():
                        yield event
                        ended = ended or (
                            event.get("componentId") is None and event.get("newStatus") in TERMINAL
                        )
                    if ended:
                        return
                    await asyncio.sleep(POLL_SECONDS)
                self._lost_since = None
            except httpx.TransportError as exc:
                await self._lost(exc)

    async def _lost(self, exc: Exception) -> None:
        now = time.monotonic()
        self._lost_since = self._lost_since or now
        if now - self._lost_since > CONTACT_SECONDS:
            raise CommandError(Exit.UNREACHABLE, f"lost contact with the server: {exc}")
        await asyncio.sleep(1.0)

    async def _stream(self) -> _Stream:
        request = self._client.build_request(
            "GET",
            self._path,
            params={"after": self.after},
            headers={"accept": "text/event-stream"},
        )
        response = await self._client.send(request, stream=True)
        if response.status_code == 503:
            await response.aclose()
            return _Stream(_none(), ended=False, can_stream=False)
        if response.status_code != 200:
            await response.aread()
            raise refusal(response)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aclose()
            return _Stream(_none(), ended=False, can_stream=False)
        stream = _Stream(_none(), ended=False, can_stream=True)
        stream.events = self._frames(response, stream)
        return stream

    async def _frames(self, response: httpx.Response, stream: _Stream) -> AsyncIterator[Any]:
        try:
            async for name, data in _sse(response.aiter_lines()):
                if name == "end":
                    stream.ended = True
                    return
                if name == "event":
                    event = json.loads(data)
                    self.after = max(self.after, int(event["id"]))
                    yield event
        finally:
            await response.aclose()

    async def _page(self) -> list[dict[str, Any]]:
        response = await self._client.get(self._path, params={"after": self.after})
        if response.status_code != 200:
            raise refusal(response)
        items: list[dict[str, Any]] = response.json()["items"]
        if items:
            self.after = max(int(item["id"]) for item in items)
        return items

    async def operation(self) -> dict[str, Any]:
        """The operation as it is now."""
        while True:
            try:
                response = await self._client.get(f"/v1/operations/{path_part(self._operation_id)}")
            except httpx.TransportError as exc:
                await self._lost(exc)
                continue
            if response.status_code != 200:
                raise refusal(response)
            found: dict[str, Any] = response.json()
            return found


@dataclass
class _Stream:
    events: AsyncIterator[dict[str, Any]]
    ended: bool
    can_stream: bool


async def _none() -> AsyncIterator[dict[str, Any]]:
    return
    yield


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """``(event name, data)`` of each Server-Sent Event (comments and retry hints dropped)."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


def progress_for(*, output_json: bool, console: Callable[[], Console]) -> Progress:
    """The live table on a terminal, plain lines elsewhere; with ``-o json``, lines on stderr
    (stdout is for the JSON)."""
    if output_json:
        return Lines(sys.stderr)
    if sys.stdout.isatty():
        return Board(console())
    return Lines(sys.stdout)
