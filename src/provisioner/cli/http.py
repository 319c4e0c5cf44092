"""The service's HTTP API as the client commands use it.

Every answer the command did not hope for becomes a ``CommandError`` whose exit code says what
kind of failure it was (``exits.Exit``), with the server's problem details on stderr.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.render import clean

DEFAULT_URL = "http://127.0.0.1:8080"
# One request (not a wait: waits have their own --timeout). Validations call every adapter.
REQUEST_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Server:
    """Where the service is and who the client is."""

    url: str
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


def path_part(value: str) -> str:
    """An id in a URL path (URNs keep their colons)."""
    return quote(value, safe=":")


def release_path(unit: str, environment: str) -> str:
    return f"/v1/deployment-units/{path_part(unit)}/environments/{path_part(environment)}"


class Api:
    """A synchronous client of one server; use as a context manager."""

    def __init__(self, server: Server, *, timeout: float = REQUEST_SECONDS) -> None:
        self.server = server
        self._client = httpx.Client(base_url=server.url, headers=server.headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def call(
        self, method: str, path: str, *, expect: Collection[int] = (200,), **kwargs: Any
    ) -> httpx.Response:
        """The answer, if its status is expected; otherwise ``CommandError``."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CommandError(
                Exit.UNREACHABLE, f"{self.server.url} did not answer {method} {path} in time"
            ) from None
        except httpx.HTTPError as exc:
            raise CommandError(Exit.UNREACHABLE, f"cannot reach {self.server.url}: {exc}") from None
        if response.status_code in expect:
            return response
        raise refusal(response)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()


def exit_code_of(status: int) -> Exit:
    """The exit code of an answer the command did not hope for."""
    if status in (401, 403) or status >= 500:
        return Exit.UNREACHABLE
    if status == 409:
        return Exit.BUSY
    return Exit.REFUSED


def refusal(response: httpx.Response) -> CommandError:
    """The error of a refused request, with what its problem details say."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:500]}
    status = response.status_code
    body.setdefault("status", status)
    word = "the server failed" if status >= 500 else "refused"
    details = [
        f"- {clean(error.get('path'))}: {clean(error.get('message'))}"
        for error in body.get("errors") or []
        if isinstance(error, dict)
    ]
    if body.get("requiredScope"):
        details.append(f"needs scope: {clean(body['requiredScope'])}")
    if body.get("operationId"):
        operation = clean(body["operationId"])
        details.append(f"active operation: {operation} (provisioner wait {operation})")
    return CommandError(
        exit_code_of(status),
        f"{word} ({status}): {clean(body.get('detail', ''))}",
        *details,
        problem=body,
    )
