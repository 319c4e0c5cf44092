"""The exported OpenAPI document is the app's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provisioner.api.app import create_app
from provisioner.api.document import NO_NUL
from provisioner.api.openapi import render
from provisioner.api.security import route_scopes
from provisioner.domain.descriptor import ID_PATTERN, MAX_ID_LENGTH
from provisioner.settings import Settings

EXPORTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_the_exported_openapi_document_matches_the_app() -> None:
    """Regenerate with `python -m provisioner.api.openapi` after changing the API."""
    assert EXPORTED.read_text(encoding="utf-8") == render()


def test_error_answers_are_documented_as_problem_details() -> None:
    document = render()
    assert "HTTPValidationError" not in document
    assert '"application/problem+json"' in document


# --- the document says what the service answers (tests/contract checks it against a server)


def app_document() -> dict[str, Any]:
    schema: dict[str, Any] = create_app(Settings()).openapi()
    return schema


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in app_document()["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_answer_a_route_can_give_is_documented_with_the_problem_schema() -> None:
    """400 everywhere (a NUL in the path or the query is refused before routing), 413 and 415
    where a body is read, 401 and 403 wherever a scope is needed; every 4xx/5xx is a problem."""
    scopes = route_scopes(create_app(Settings()))
    for method, path, operation in operations():
        answers = operation["responses"]
        assert "400" in answers, f"{method} {path}"
        if "requestBody" in operation:
            assert {"413", "415"} <= set(answers), f"{method} {path}"
        if "open" not in scopes[f"{method} {path}"]:
            assert {"401", "403"} <= set(answers), f"{method} {path}"
        for code, answer in answers.items():
            if int(code) >= 400:
                assert answer["content"] == {
                    "application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/ProblemOut"}
                    }
                }, f"{method} {path} {code}"


def test_no_parameter_offers_null() -> None:
    """A query string or a header has no null: optional parameters are absent or a value."""
    for method, path, operation in operations():
        for parameter in operation.get("parameters", []):
            assert "null" not in json.dumps(parameter["schema"]), f"{method} {path}"


def test_ids_cursors_and_subsets_carry_their_constraints() -> None:
    """What the service refuses is what the document forbids: ids (their pattern and length),
    an empty cursor, an empty component subset, an empty descriptor."""
    paths = app_document()["paths"]
    release = paths["/v1/deployment-units/{deployment_unit_id}/environments/{environment}"]
    unit_id = release["get"]["parameters"][0]["schema"]
    assert unit_id["pattern"] == ID_PATTERN
    assert (unit_id["minLength"], unit_id["maxLength"]) == (1, MAX_ID_LENGTH)
    listing = {p["name"]: p["schema"] for p in paths["/v1/operations"]["get"]["parameters"]}
    assert listing["cursor"]["minLength"] == 1
    assert listing["deploymentUnitId"]["pattern"] == ID_PATTERN
    body = paths["/v1/deployments"]["post"]["requestBody"]["content"]["application/json"]
    envelope = body["schema"]["properties"]
    assert envelope["components"]["minItems"] == 1
    assert envelope["components"]["items"]["pattern"] == ID_PATTERN
    assert {"type": "string", "minLength": 1, "pattern": NO_NUL} in envelope["descriptor"]["oneOf"]
    undeploy = app_document()["components"]["schemas"]["UndeployRequest"]["properties"]
    assert undeploy["components"]["minItems"] == 1


def test_free_form_values_of_request_bodies_hold_no_nul() -> None:
    """domain.documents refuses a NUL character anywhere in a body: the document says so."""
    schemas = app_document()["components"]["schemas"]
    reverse = schemas["ReverseProvisioningRequest"]["properties"]
    free_form = next(s for s in reverse["params"]["anyOf"] if s.get("type") == "object")
    assert free_form["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}
    assert free_form["propertyNames"] == {"pattern": NO_NUL}
    assert schemas["AclRequest"]["properties"]["refs"]["items"]["pattern"] == NO_NUL
    assert re.search(NO_NUL, "a\x00b") is None
    assert re.search(NO_NUL, "ab")


def test_an_accepted_operation_links_to_its_status_events_cancel_and_retry() -> None:
    paths = app_document()["paths"]
    links = paths["/v1/deployments"]["post"]["responses"]["202"]["links"]
    get_operation = paths["/v1/operations/{operation_id}"]["get"]["operationId"]
    assert links["GetOperation"] == {
        "operationId": get_operation,
        "parameters": {"operation_id": "$response.body#/id"},
    }
    assert {"ListEvents", "CancelOperation", "RetryOperation", "GetRelease"} <= set(links)
