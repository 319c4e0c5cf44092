"""Bad input gets a clear 4xx problem with a machine-readable body, and the service keeps
serving: every refusal named by the API contract."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

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
    an adapter not registered for the target environment (the request's, which wins over the
    descriptor's: promotion)."""
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
    unregistered = found["descriptor.components[6].infrastructureTemplateId"]
    assert "no Tech Adapter is registered" in unregistered
    assert "'production'" in unregistered
    assert "environment" not in found


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


# --- hostile input: each refused with a clear 4xx --------------------------------------------

UNIT_ID = "urn:dmb:dp:test:hostile:0"
YAML_UNIT = f"id: {UNIT_ID}\nname: x\nversion: '1'\nenvironment: development\ncomponents: []\n"
FORBIDDEN = "must not contain '/', white space, control, bidirectional or invisible characters"


def as_yaml(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/yaml"}}


def as_json(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def alias_multiplier(scalar_chars: int) -> str:
    """A scalar used 100 times in a list, that list 100 times: 10,000 copies of its text."""
    return (
        YAML_UNIT
        + f"s: &s {'x' * scalar_chars}\n"
        + f"l1: &l1 [{', '.join(['*s'] * 100)}]\n"
        + f"l2: [{', '.join(['*l1'] * 100)}]\n"
    )


async def test_a_descriptor_with_more_problems_than_are_listed_stays_small(
    api: httpx.AsyncClient,
) -> None:
    """A component depending on 5,000 unknown ids gets one 422 that lists the first 100
    problems and says how many there are (a 40,000-problem answer was 3.8 MB)."""
    document = unit(UNIT_ID, [component("a", depends_on=[f"u{i}" for i in range(5000)])])

    response = await api.post("/v1/deployments", json={"descriptor": document})

    body = problem(response, 422)
    assert len(body["errors"]) == 100
    assert body["errors"][0] == {
        "path": "descriptor.components[0].dependsOn[0]",
        "message": "unknown component id 'u0'",
    }
    assert body["detail"] == "the descriptor is invalid (5000 problems; the first 100 are listed)"
    assert len(response.content) < 20_000


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param(as_yaml(alias_multiplier(1024)), id="yaml-body"),
        pytest.param(
            as_json(json.dumps({"descriptor": alias_multiplier(1024)})), id="yaml-in-json"
        ),
    ],
)
async def test_aliases_may_not_expand_a_descriptor_past_the_body_limit(
    api: httpx.AsyncClient, request_body: dict[str, Any]
) -> None:
    """A 2 KB body whose aliases make 10 MB of text is refused: a descriptor may not be
    larger, once expanded, than a body may be (PROVISIONER_MAX_BODY_BYTES, 64 KiB here)."""
    response = await api.post("/v1/deployments", **request_body)

    assert problem(response, 400)["detail"] == (
        f"the document expands to more than {LIMIT} characters of text (aliases)"
    )


@pytest.mark.parametrize(
    ("request_body", "needle"),
    [
        pytest.param(
            as_yaml(YAML_UNIT + "v: " + ":".join(["1"] * 20_000) + "\n"),
            "is a sexagesimal number: quote it (line 6)",
            id="sexagesimal",
        ),
        pytest.param(
            as_yaml(YAML_UNIT + "v: " + "9" * 5000 + "\n"),
            "an integer has more than 4300 digits",
            id="yaml-decimal-digits",
        ),
        pytest.param(
            as_yaml(YAML_UNIT + "v: 0x" + "f" * 5000 + "\n"),
            "an integer has more than 4300 digits",
            id="yaml-hex-digits",
        ),
        pytest.param(
            as_json('{"descriptor": {"v": ' + "9" * 5000 + "}}"),
            "an integer has more than 4300 digits",
            id="json-digits",
        ),
        pytest.param(as_yaml(YAML_UNIT + "v: !!map 1\n"), "cannot be written on", id="map-tag"),
        pytest.param(as_yaml(YAML_UNIT + "v: !!int x\n"), "is not an integer", id="int-tag"),
        pytest.param(as_yaml(YAML_UNIT + "v: .nan\n"), "not a finite number", id="yaml-nan"),
        pytest.param(as_yaml(YAML_UNIT + "v: -.inf\n"), "not a finite number", id="yaml-inf"),
        pytest.param(as_json('{"descriptor": {"v": NaN}}'), "NaN is not a JSON", id="json-nan"),
        pytest.param(
            as_json('{"descriptor": {"v": Infinity}}'), "Infinity is not", id="json-infinity"
        ),
        pytest.param(as_json('{"descriptor": {"v": 1e400}}'), "out of range", id="json-1e400"),
    ],
)
async def test_numbers_json_cannot_hold_are_refused(
    api: httpx.AsyncClient, request_body: dict[str, Any], needle: str
) -> None:
    """YAML base-60 numbers, integers past Python's conversion limit, NaN and infinities were
    accepted (and stored as invalid JSON) or answered 500: each is a 400 saying why."""
    response = await api.post("/v1/deployments", **request_body)

    assert needle in problem(response, 400)["detail"]


@pytest.mark.parametrize(
    ("request_body", "detail"),
    [
        pytest.param(
            as_yaml(YAML_UNIT + "id: urn:dmb:dp:test:other:0\n"),
            "duplicate key 'id' at descriptor.id (lines 1 and 6) with different values: keep one",
            id="yaml",
        ),
        pytest.param(
            as_json(
                '{"descriptor": {"id": "urn:a:0", "name": "x", "version": "1", '
                '"components": [], "id": "urn:b:0"}}'
            ),
            "duplicate key 'id' at descriptor.id with different values: keep one",
            id="json-object",
        ),
        pytest.param(
            as_json(json.dumps({"descriptor": YAML_UNIT + "components: [{id: a}]\n"})),
            "duplicate key 'components' at descriptor.components (lines 5 and 6) with "
            "different values: keep one",
            id="yaml-in-json",
        ),
        pytest.param(
            as_json('{"descriptor": {}, "environment": "development", "environment": "prod"}'),
            "duplicate key 'environment' at environment with different values: keep one",
            id="envelope",
        ),
    ],
)
async def test_a_key_repeated_with_another_value_is_refused(
    api: httpx.AsyncClient, request_body: dict[str, Any], detail: str
) -> None:
    """A second ``id:`` used to win silently (and deploy another unit): a 400 names the key
    and where it is."""
    response = await api.post("/v1/deployments", **request_body)

    assert problem(response, 400)["detail"] == detail


async def test_a_key_repeated_in_an_undeploy_body_is_refused(api: httpx.AsyncClient) -> None:
    """Every JSON body is read the same strict way: ``removeData`` twice is not last-wins."""
    response = await api.post(
        "/v1/undeployments",
        **as_json(
            '{"deploymentUnitId": "urn:a:0", "environment": "development", '
            '"removeData": false, "removeData": true}'
        ),
    )

    assert problem(response, 400)["detail"] == (
        "duplicate key 'removeData' at removeData with different values: keep one"
    )


@pytest.mark.parametrize(
    "environment",
    [
        pytest.param("dev/x", id="slash"),
        pytest.param("dev\tx", id="tab"),
        pytest.param("dev\nx", id="newline"),
        pytest.param("dev\u202ex", id="right-to-left-override"),
        pytest.param("dev\u200bx", id="zero-width-space"),
        pytest.param("e" * 513, id="513-characters"),
    ],
)
async def test_an_environment_is_held_to_the_rules_of_ids_wherever_it_enters(
    api: httpx.AsyncClient, environment: str
) -> None:
    """In the descriptor, the envelope, the query, an undeploy body, a path and a filter: a
    release in ``dev/x`` could be deployed but never read back."""
    document = unit(UNIT_ID, [component("a")], environment=environment)
    encoded = quote(environment, safe="")
    release = f"/v1/deployment-units/{UNIT_ID}/environments/{encoded}"
    answers = {
        "descriptor.environment": await api.post("/v1/deployments", json={"descriptor": document}),
        "environment": await api.post(
            "/v1/deployments",
            json={"descriptor": unit(UNIT_ID, []), "environment": environment},
        ),
        "query.environment": await api.post(
            "/v1/deployments", params={"environment": environment}, **as_yaml(YAML_UNIT)
        ),
        "undeploy.environment": await api.post(
            "/v1/undeployments", json={"deploymentUnitId": UNIT_ID, "environment": environment}
        ),
        "filter.environment": await api.get("/v1/releases", params={"environment": environment}),
    }
    if "/" not in environment:  # %2F in a path is decoded to '/': no route matches (404)
        answers["path.environment"] = await api.get(release)
    for where, response in answers.items():
        paths = messages(problem(response, 422))
        assert any(path.endswith("environment") for path in paths), (where, paths)


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u200e"])
async def test_ids_with_bidirectional_or_invisible_characters_are_refused(
    api: httpx.AsyncClient, char: str
) -> None:
    """Unit and component ids, ``dependsOn`` entries and ``components`` selections: each is
    named in the 422 (such ids read as other ids, or reorder what is displayed)."""
    document = unit(
        f"urn:dmb:dp:test:x{char}:0",
        [component(f"a{char}"), component("b", depends_on=[f"c{char}"])],
    )

    deploy = await api.post(
        "/v1/deployments", json={"descriptor": document, "components": [f"b{char}"]}
    )
    assert messages(problem(deploy, 422)) == {"components[0]": FORBIDDEN}
    deploy = await api.post("/v1/deployments", json={"descriptor": document})
    assert messages(problem(deploy, 422)) == {
        "descriptor.id": FORBIDDEN,
        "descriptor.components[0].id": FORBIDDEN,
        "descriptor.components[1].dependsOn[0]": FORBIDDEN,
    }
    undeploy = await api.post(
        "/v1/undeployments",
        json={"deploymentUnitId": UNIT_ID, "environment": "dev", "components": [f"a{char}"]},
    )
    assert messages(problem(undeploy, 422)) == {"components.0": FORBIDDEN}


@pytest.mark.parametrize("value", ["yes", "true", 1, "1", None])
async def test_remove_data_must_be_a_json_boolean(api: httpx.AsyncClient, value: object) -> None:
    """``"removeData": "yes"`` was taken as true on a destructive flag."""
    response = await api.post(
        "/v1/undeployments",
        json={"deploymentUnitId": UNIT_ID, "environment": "dev", "removeData": value},
    )

    assert "removeData" in messages(problem(response, 422))


@pytest.mark.parametrize(("value", "status"), [("yes", 422), ("1", 422), ("true", 404)])
async def test_a_boolean_query_parameter_is_true_or_false(
    api: httpx.AsyncClient, value: str, status: int
) -> None:
    """``includeDescriptor=yes`` is refused; ``true`` is read (404: nothing is deployed)."""
    response = await api.get(
        f"/v1/deployment-units/{UNIT_ID}/environments/dev",
        params={"includeDescriptor": value},
    )

    body = problem(response, status)
    if status == 422:
        assert messages(body) == {"query.includeDescriptor": "must be true or false"}
