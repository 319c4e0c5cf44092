"""What schemathesis found where the OpenAPI document and the service disagreed, each now
either accepted or forbidden by the document, and answered as documented (a problem body).
tests/integration/test_openapi.py checks the document's side; tests/contract the whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceFactory
from tests.support import component, unit

PROBLEM = "application/problem+json"
UNIT = "urn:dmb:dp:test:truth:0"
ACL = f"/v1/deployment-units/{UNIT}/environments/development/components/c/acl"


@pytest.fixture
async def api(sqlite_url: str, service_factory: ServiceFactory) -> AsyncIterator[httpx.AsyncClient]:
    server = service_factory(sqlite_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(
    "path",
    [
        "/v1/operations",
        "/v1/releases",
        f"/v1/deployment-units/{UNIT}/environments/development/publications",
    ],
)
async def test_an_empty_cursor_is_refused_as_the_document_says(
    api: httpx.AsyncClient, path: str
) -> None:
    """The document requires a cursor of at least one character: ``cursor=`` is 422 saying
    so, not a 400 "invalid cursor" for a value the document allowed."""
    body = problem(await api.get(path, params={"cursor": ""}), 422)
    assert body["errors"][0]["path"] == "query.cursor"


async def test_an_empty_descriptor_is_refused(api: httpx.AsyncClient) -> None:
    """``{"descriptor": ""}``: the document's minLength forbids it; the service says why."""
    body = problem(await api.post("/v1/deployments", json={"descriptor": ""}), 400)
    assert "empty" in body["detail"]


@pytest.mark.parametrize("path", ["/v1/deployments", "/v1/validations"])
async def test_an_empty_component_subset_is_refused_on_deploy_and_validation_alike(
    api: httpx.AsyncClient, path: str
) -> None:
    """``components: []`` (the document's minItems forbids it) is 422 naming the field."""
    document = unit(UNIT, [component("a")])
    body = problem(await api.post(path, json={"descriptor": document, "components": []}), 422)
    assert {e["path"]: e["message"] for e in body["errors"]} == {
        "components": "must list at least one component"
    }


async def test_an_unregistered_template_id_is_the_documented_422(api: httpx.AsyncClient) -> None:
    """Template id "0" is well formed; that no Tech Adapter is registered for it is 422."""
    response = await api.post(
        "/v1/reverse-provisioning",
        json={"infrastructureTemplateId": "0", "useCaseTemplateId": "0", "environment": "dev"},
    )
    body = problem(response, 422)
    assert body["errors"][0]["path"] == "infrastructureTemplateId"


async def test_a_nul_in_a_query_key_is_the_documented_400(api: httpx.AsyncClient) -> None:
    body = problem(await api.get("/v1/operations?a%00=1"), 400)
    assert "NUL" in body["detail"]


@pytest.mark.parametrize(
    "path", [ACL, "/v1/reverse-provisioning", "/v1/undeployments", "/v1/validations"]
)
async def test_a_body_that_is_not_json_is_415(api: httpx.AsyncClient, path: str) -> None:
    """A form or plain text where JSON is read: 415 naming the content type, not a 422 about
    an object with no path."""
    response = await api.post(path, content=b"refs=a", headers={"content-type": "text/plain"})
    assert "'text/plain'" in problem(response, 415)["detail"]


async def test_a_json_body_without_a_content_type_is_still_read(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/undeployments", content=b'{"deploymentUnitId": "' + UNIT.encode() + b'"}'
    )
    assert problem(response, 422)["errors"][0]["path"] == "environment"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/healthz", {"GET"}),
        ("DELETE", "/v1/deployments", {"POST"}),
        ("PUT", "/v1/operations/x", {"GET"}),
    ],
)
async def test_405_says_which_methods_are_allowed(
    api: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110: a 405 carries ``Allow``."""
    response = await api.request(method, path)
    problem(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
