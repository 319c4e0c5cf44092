"""Helpers of the Market Plane tests (the ``market`` fixture is in conftest): a registry that
names Market Planes, and reading what they received and what the service says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support import ServerThread, wait_until, write_registry

SECRET = "market-plane-signing-secret"
# Settings for tests: retries within a fraction of a second.
FAST_RETRIES = {
    "publication_retry_initial_seconds": "0.05",
    "publication_retry_max_seconds": "0.2",
    "publication_request_timeout_seconds": "5",
}


def registry_with(tmp_path: Path, mock_adapter: str, *planes: tuple[str, str, str]) -> Path:
    """The test registry with Market Planes ``(name, url, secret)``."""
    entries = "".join(
        f"  - name: {name}\n    url: {url}/mock/marketplace/events\n"
        f"    headers: {{X-Plane: {name}}}\n    secret: {secret}\n"
        for name, url, secret in planes
    )
    return write_registry(tmp_path, mock_adapter, extra=f"marketplaces:\n{entries}")


async def market_events(market: ServerThread) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=market.url, timeout=30) as http:
        body: dict[str, Any] = (await http.get("/mock/marketplace/events")).json()
        return body


async def fail_deliveries(market: ServerThread, count: int, status: int = 503) -> None:
    async with httpx.AsyncClient(base_url=market.url, timeout=30) as http:
        response = await http.post(
            "/mock/marketplace/fail", json={"count": count, "status": status}
        )
        assert response.status_code == 200, response.text


async def release_of(client: httpx.AsyncClient, unit_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/deployment-units/{unit_id}/environments/development")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def release_becomes(client: httpx.AsyncClient, unit_id: str, status: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        release = await release_of(client, unit_id)
        return release if release["status"] == status else None

    result: dict[str, Any] = await wait_until(reached)
    return result


async def publications(client: httpx.AsyncClient, unit_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/deployment-units/{unit_id}/environments/development/publications"
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items
