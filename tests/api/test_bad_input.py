"""Bad input gets a clear 4xx problem with a machine-readable body, and the service keeps
serving: every refusal named by the API contract."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ServiceFactory
from tests.support import UNKNOWN, component, unit

LIMIT = 64 * 1024


@pytest.fixture
async def api(sqlite_url: str, service_factory: ServiceFactory) -> AsyncIterator[httpx.AsyncClient]:
    server = service_factory(sqlite_url, max_body_bytes=LIMIT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http
        # Whatever was refused, the service still answers and nothing was stored.
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/v1/operations")).json()["items"] == []


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:provisioner:problem:")
    assert body["detail"]
    return body


def messages(body: dict[str, Any]) -> dict[str, str]:
    return {error["path"]: error["message"] for error in body["errors"]}


async def test_every_problem_of_a_descriptor_is_listed_with_its_path(
    api: httpx.AsyncClient,
) -> None:
    """One 422 lists all problems: cycle, unknown dependency, duplicate id, missing fields,
    unregistered adapter, environment mismatch."""
    document = unit(
        "urn:dmb:dp:test:bad:0",
        [
            component("x", depends_on=["z"]),
            component("y", depends_on=["x"]),
            component("z", depends_on=["y"]),
            component("w", depends_on=["nowhere"]),
            component("x"),
            {"id": "v", "dependsOn": []},
            component("u", template=UNKNOWN),
        ],
    )
    del document["name"]
    response = await api.post(
        "/v1/deployments", json={"descriptor": document, "environment": "production"}
    )
    body = problem(response, 422)
    found = messages(body)
    assert body["type"].endswith("invalid-descriptor")
    assert found["descriptor.name"] == "is required"
    assert found["descriptor.components[0].dependsOn"].startswith(
        "dependency cycle: x -> z -> y -> x"
    )
    assert found["descriptor.components[3].dependsOn[0]"] == "unknown component id 'nowhere'"
    assert "duplicate component id 'x'" in found["descriptor.components[4].id"]
    assert found["descriptor.components[5].kind"] == "is required"
    assert found["descriptor.components[5].infrastructureTemplateId"] == "is required"
    assert (
        "no Tech Adapter is registered"
        in found["descriptor.components[6].infrastructureTemplateId"]
    )
    assert "'production'" in found["environment"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "malformed JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b'{"descriptor": "id: [unclosed"}', "application/json", 400, "malformed YAML"),
        (b'{"descriptor": "- a\\n- b"}', "application/json", 400, "must be a mapping"),
        (b'{"descriptor": 42}', "application/json", 422, "YAML string or an object"),
        (b'{"descriptor": {}, "surprise": 1}', "application/json", 422, "unknown field"),
        (b"key: value: nope", "application/yaml", 400, "malformed YAML"),
        (b"just a string", "application/yaml", 400, "must be a mapping"),
        (b"a: 1\n---\nb: 2\n", "application/yaml", 400, "another document"),
        (b"!!python/object:os.system {}", "application/yaml", 400, "unsupported YAML type"),
        (b"\xff\xfe", "application/yaml", 400, "UTF-8"),
        (b"id: x", "text/csv", 415, "unsupported content type"),
    ],
)
async def test_unreadable_bodies_are_refused(
    api: httpx.AsyncClient, content: bytes, content_type: str, status: int, needle: str
) -> None:
    """Malformed YAML or JSON, a non-mapping root, unsafe tags: 4xx saying what is wrong."""
    response = await api.post(
        "/v1/deployments", content=content, headers={"content-type": content_type}
    )
    body = problem(response, status)
    assert needle in json.dumps(body)


async def test_a_yaml_alias_bomb_is_refused_quickly(api: httpx.AsyncClient) -> None:
    """A billion-laughs document is refused without being expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        previous, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
    bomb = "\n".join(lines).encode()
    response = await api.post(
        "/v1/deployments", content=bomb, headers={"content-type": "application/yaml"}
    )
    assert "aliases" in problem(response, 400)["detail"]


async def test_a_body_over_the_limit_is_refused_with_413(api: httpx.AsyncClient) -> None:
    """Declared too large (Content-Length) or streamed past the limit: 413 either way."""
    big = yaml.safe_dump(unit("urn:dmb:dp:test:big:0", [component("a")], padding="x" * LIMIT))
    declared = await api.post(
        "/v1/deployments", content=big.encode(), headers={"content-type": "application/yaml"}
    )
    assert problem(declared, 413)["type"].endswith("payload-too-large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192].encode()

    streamed = await api.post(
        "/v1/deployments", content=chunks(), headers={"content-type": "application/yaml"}
    )
    problem(streamed, 413)


async def test_deeply_nested_documents_are_refused(api: httpx.AsyncClient) -> None:
    """Nesting is bounded so that nothing downstream recurses without limit."""
    nested: Any = "leaf"
    for _ in range(200):
        nested = {"n": nested}
    response = await api.post(
        "/v1/deployments", json={"descriptor": unit("urn:dmb:dp:test:deep:0", [], specific=nested)}
    )
    assert "nested deeper" in problem(response, 400)["detail"]


async def test_an_environment_is_required_from_somewhere(api: httpx.AsyncClient) -> None:
    """Without environment in the request or the descriptor, 422 says so."""
    document = unit("urn:dmb:dp:test:noenv:0", [component("a")])
    del document["environment"]
    response = await api.post("/v1/deployments", json={"descriptor": document})
    assert "environment" in messages(problem(response, 422))


async def test_ids_that_cannot_travel_in_a_url_are_refused(api: httpx.AsyncClient) -> None:
    """Ids are opaque strings, but not ones with '/', white space or control characters."""
    document = unit("urn:dmb:dp:test:ids:0", [component("a/b"), component("c d")])
    response = await api.post("/v1/deployments", json={"descriptor": document})
    found = messages(problem(response, 422))
    assert set(found) == {"descriptor.components[0].id", "descriptor.components[1].id"}


async def test_bad_query_and_request_fields_are_422_problems(api: httpx.AsyncClient) -> None:
    """Out-of-range query parameters and wrong undeploy fields answer 422 with paths."""
    listing = await api.get("/v1/operations", params={"limit": 0})
    assert messages(problem(listing, 422))
    wrong = await api.post("/v1/undeployments", json={"deploymentUnitId": 3, "removeData": "maybe"})
    found = messages(problem(wrong, 422))
    assert {"deploymentUnitId", "environment", "removeData"} <= set(found)
    cursor = await api.get("/v1/operations", params={"cursor": "not-a-cursor"})
    problem(cursor, 400)


async def test_cancel_and_retry_of_unknown_operations_are_404(api: httpx.AsyncClient) -> None:
    for action in ("cancel", "retry"):
        response = await api.post(f"/v1/operations/01890000-0000-7000-8000-000000000000/{action}")
        problem(response, 404)
