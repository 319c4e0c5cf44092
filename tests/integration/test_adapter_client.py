"""The Tech Adapter client's wire edge cases (``provisioner.adapters.client`` and ``wire``),
against answers scripted with respx: results, tokens, polling, errors, retries, request bodies."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
import yaml
from fastapi import FastAPI
from pydantic import BaseModel

from provisioner.adapters.client import (
    ClientPolicy,
    ReverseProvisioningOutcome,
    TechAdapterClient,
    ValidationOutcome,
)
from provisioner.adapters.pool import ShardedClient, tls_context
from provisioner.domain.rendering import DescriptorTexts, SharedText
from provisioner.domain.status import TaskAction
from provisioner.engine.ports import (
    Accepted,
    AdapterEndpoint,
    AdapterRequest,
    ProvisioningResult,
)
from provisioner.errors import AdapterError, AdapterTransientError

URL = "http://adapter.test"
TEMPLATE = "urn:dmb:itm:test-adapter:0"
HEADERS = {"Authorization": "Bearer s3cret", "X-Tenant": "tenant-1"}
ENDPOINT = AdapterEndpoint(
    infrastructure_template_id=TEMPLATE, url=URL, timeout_seconds=60.0, headers=HEADERS
)
ASYNC_VALIDATING = AdapterEndpoint(
    infrastructure_template_id=TEMPLATE, url=URL, timeout_seconds=60.0, async_validation=True
)
RETRIES = 3
POLICY = ClientPolicy(
    retry_attempts=RETRIES,
    retry_max_seconds=30.0,
    poll_initial_seconds=0.001,
    poll_max_seconds=0.004,
    poll_multiplier=2.0,
    poll_error_budget=3,
    max_connections=8,  # one connection pool: building more only slows the tests down
)
UNIT_ID = "urn:dmb:dp:test:client:0"
COMPONENT_ID = "urn:dmb:cmp:test:client:0:storage"
DOCUMENT: dict[str, Any] = {
    "id": UNIT_ID,
    "name": "Client ü 日本",
    "version": "1.0.0",
    "description": 'quotes " and \\ backslashes\nnew lines\ttabs \u2028 separators \x01 😀',
    "components": [{"id": COMPONENT_ID, "kind": "storage"}],
}
STATUS_PATH = r"^/v1/provision/[^/]+/status$"


def request(
    action: TaskAction = TaskAction.PROVISION,
    *,
    remove_data: bool = False,
    latest: SharedText | None = None,
) -> AdapterRequest:
    return AdapterRequest(
        action=action,
        descriptor_kind="COMPONENT_DESCRIPTOR",
        descriptor=DescriptorTexts(DOCUMENT).component(COMPONENT_ID),
        latest_enriched_descriptor=latest,
        remove_data=remove_data,
    )


def status(value: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"status": value, **fields})


def running() -> httpx.Response:
    return status("RUNNING")


def accepted(token: str = "tok-1") -> httpx.Response:
    return httpx.Response(202, json=token)


def sent(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


@pytest.fixture
async def client() -> AsyncIterator[TechAdapterClient]:
    adapter_client = TechAdapterClient(POLICY)
    yield adapter_client
    await adapter_client.aclose()


@pytest.fixture
def adapter() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the client asks ``asyncio.sleep`` for; each sleep only yields to the loop.

    Only this test's thread is recorded: servers of the session run in threads of their own and
    sleep for real.
    """
    delays: list[float] = []
    real_sleep = asyncio.sleep
    mine = threading.get_ident()

    async def record(delay: float, result: Any = None) -> Any:
        if threading.get_ident() != mine:
            return await real_sleep(delay, result)
        delays.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", record)
    return delays


# --- provision: answered at once ---------------------------------------------------------------


async def test_a_200_completed_is_the_result_with_info_and_logs(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """COMPLETED on the POST itself carries publicInfo, privateInfo and the logs."""
    logs = [{"timestamp": "2024-01-01T00:00:00Z", "level": "INFO", "message": "created"}]
    adapter.post("/v1/provision").mock(
        return_value=status(
            "COMPLETED",
            info={"publicInfo": {"table": "t1"}, "privateInfo": {"secret": "x"}},
            logs=logs,
        )
    )

    result = await client.start(ENDPOINT, request())

    assert result == ProvisioningResult(
        succeeded=True, public_info={"table": "t1"}, private_info={"secret": "x"}, logs=logs
    )


async def test_a_200_failed_is_a_result_with_a_readable_error(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FAILED gives the adapter's ``result`` and the messages of its ERROR logs."""
    logs = [
        {"timestamp": "t", "level": "INFO", "message": "starting"},
        {"timestamp": "t", "level": "ERROR", "message": "bucket exists"},
        {"timestamp": "t", "level": "error", "message": "quota exceeded"},
        {"timestamp": "t", "level": "ERROR"},
        "not an object",
    ]
    adapter.post("/v1/provision").mock(
        return_value=status("FAILED", result="could not create the bucket", logs=logs)
    )

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert not result.succeeded
    assert result.error == {
        "message": "the Tech Adapter reported FAILED: could not create the bucket",
        "result": "could not create the bucket",
        "errors": ["bucket exists", "quota exceeded"],
    }
    assert len(result.logs) == 4  # the non-object entry is dropped


async def test_a_200_failed_without_explanation_still_says_it_failed(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A bare FAILED (no result, no logs, logs null) has a plain message and nothing else."""
    adapter.post("/v1/provision").mock(return_value=status("FAILED", logs=None))

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert result.error == {"message": "the Tech Adapter reported FAILED"}


async def test_a_200_running_without_a_token_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """RUNNING on a 200 leaves nothing to poll: refused as a protocol error."""
    adapter.post("/v1/provision").mock(return_value=running())

    with pytest.raises(AdapterError, match="RUNNING without a token") as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["statusCode"] == 200
    assert caught.value.detail["request"] == "POST /v1/provision"
    assert not isinstance(caught.value, AdapterTransientError)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>oops</html>", id="html"),
        pytest.param(b'{"status": "DONE"}', id="unknown-status"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_an_unreadable_200_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter, body: bytes
) -> None:
    """A 200 that is not a ProvisioningStatus is refused, with the body kept for reading."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(200, content=body))

    with pytest.raises(AdapterError, match="unreadable answer") as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["body"] == body.decode()


# --- provision: tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param('"tok-1"', "application/json", id="json-quoted"),
        pytest.param("tok-1", "text/plain; charset=utf-8", id="text-plain"),
        pytest.param('"tok-1"', "text/plain", id="text-plain-quoted"),
        pytest.param("tok-1", None, id="raw-without-content-type"),
        pytest.param('"tok-1"', None, id="quoted-without-content-type"),
        pytest.param("  tok-1\n", "text/plain", id="surrounding-white-space"),
    ],
)
async def test_a_202_token_is_read_in_every_variant(
    client: TechAdapterClient, adapter: respx.MockRouter, body: str, content_type: str | None
) -> None:
    """2.2.0 sends a JSON string, 2.1.0 ``text/plain``, some adapters raw text with no type."""
    headers = {"content-type": content_type} if content_type else {}
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(202, content=body.encode(), headers=headers)
    )

    assert await client.start(ENDPOINT, request()) == Accepted("tok-1")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param("", "text/plain", id="empty"),
        pytest.param('""', "application/json", id="empty-json-string"),
        pytest.param('"unterminated', "text/plain", id="broken-quote"),
        pytest.param('{"token": "x"}', "application/json", id="json-object"),
        pytest.param("tok\ten", "text/plain", id="tab"),
        pytest.param("line\nbreak", None, id="newline"),
        pytest.param("t" * 1025, "text/plain", id="too-long"),
    ],
)
async def test_a_202_without_a_usable_token_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter, body: str, content_type: str | None
) -> None:
    """Empty, malformed, non-string or oversized tokens are refused; nothing is polled."""
    headers = {"content-type": content_type} if content_type else {}
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(202, content=body.encode(), headers=headers)
    )
    poll = adapter.get(path__regex=STATUS_PATH).mock(return_value=status("COMPLETED"))

    with pytest.raises(AdapterError, match="202 without a usable token") as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["statusCode"] == 202
    assert not poll.called


async def test_an_unquoted_token_labelled_json_is_accepted(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A raw token with ``content-type: application/json`` is still that token (Spring writes a
    String body unquoted), digits included."""
    for token in ("3f2a-77c1", "123"):
        adapter.post("/v1/provision").mock(
            return_value=httpx.Response(
                202, content=token.encode(), headers={"content-type": "application/json"}
            )
        )
        assert await client.start(ENDPOINT, request()) == Accepted(token)


async def test_a_token_is_url_quoted_in_the_poll_path(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """'/', spaces, '?' and '%' in a token stay inside one path segment."""
    paths: list[bytes] = []

    def answer(polled: httpx.Request) -> httpx.Response:
        paths.append(polled.url.raw_path)
        return status("COMPLETED")

    adapter.get(path__regex=r"^/v1/provision/").mock(side_effect=answer)

    result = await client.wait(ENDPOINT, "a/b c?d%e")

    assert result.succeeded
    assert paths == [b"/v1/provision/a%2Fb%20c%3Fd%25e/status"]


# --- provision: polling ------------------------------------------------------------------------


async def test_polling_continues_until_completed(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """RUNNING answers are polled again; COMPLETED ends with its info."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[running(), running(), status("COMPLETED", info={"publicInfo": {"a": 1}})]
    )

    result = await client.wait(ENDPOINT, "tok-1")

    assert result == ProvisioningResult(True, public_info={"a": 1})
    assert poll.call_count == 3


async def test_the_poll_interval_grows_up_to_its_maximum(
    client: TechAdapterClient, adapter: respx.MockRouter, sleeps: list[float]
) -> None:
    """Each wait multiplies the previous one (x2 here) and stops growing at the maximum."""
    adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[running(), running(), running(), running(), status("COMPLETED")]
    )

    await client.wait(ENDPOINT, "tok-1")

    assert sleeps == pytest.approx([0.001, 0.002, 0.004, 0.004, 0.004])


async def test_a_failed_poll_answer_is_a_failed_result(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FAILED from a poll is a result with the readable error, not an exception."""
    adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[running(), status("FAILED", result="boom")]
    )

    result = await client.wait(ENDPOINT, "tok-1")

    assert not result.succeeded
    assert result.error == {"message": "the Tech Adapter reported FAILED: boom", "result": "boom"}


POLL_FAILURES: dict[str, Callable[[], httpx.Response | Exception]] = {
    "502": lambda: httpx.Response(502, text="Bad Gateway"),
    # The Databricks adapter after a restart: its tasks lived in memory.
    "500-forgotten-token": lambda: httpx.Response(
        500, json={"error": "Cannot find Provisioning Status for id 'tok-1'"}
    ),
    "404-unknown-token": lambda: httpx.Response(
        404, json={"errors": ["unknown token"], "userMessage": "no such task"}
    ),
    "404-fastapi": lambda: httpx.Response(404, json={"detail": "Not Found"}),
    "429-with-body": lambda: httpx.Response(429, json={"error": "slow down"}),
    "403-proxy-page": lambda: httpx.Response(403, text="<html><h1>Forbidden</h1></html>"),
    "400-empty": lambda: httpx.Response(400),
    "garbage-body": lambda: httpx.Response(200, content=b"<html>proxy error</html>"),
    "wrong-shape": lambda: httpx.Response(200, json={"state": "DONE"}),
    "read-timeout": lambda: httpx.ReadTimeout("timed out"),
    "refused": lambda: httpx.ConnectError("refused"),
}


@pytest.mark.parametrize("failure", POLL_FAILURES.values(), ids=POLL_FAILURES.keys())
async def test_poll_failures_up_to_the_budget_lose_track(
    client: TechAdapterClient,
    adapter: respx.MockRouter,
    failure: Callable[[], httpx.Response | Exception],
) -> None:
    """``poll_error_budget`` (3) failed polls in a row end in AdapterError "lost track"."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[failure() for _ in range(POLICY.poll_error_budget)] + [status("COMPLETED")]
    )

    with pytest.raises(AdapterError, match="lost track of the operation") as caught:
        await client.wait(ENDPOINT, "tok-1")

    assert poll.call_count == POLICY.poll_error_budget
    assert caught.value.detail["consecutiveFailures"] == POLICY.poll_error_budget
    assert caught.value.detail["lastError"]
    assert not isinstance(caught.value, AdapterTransientError)


async def test_a_completed_poll_after_errors_below_the_budget_succeeds(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Two failed polls of different kinds, then COMPLETED: the result is a success."""
    adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[
            POLL_FAILURES["502"](),
            POLL_FAILURES["read-timeout"](),
            status("COMPLETED", info={"publicInfo": {"ok": True}, "privateInfo": {}}),
        ]
    )

    result = await client.wait(ENDPOINT, "tok-1")

    assert result.succeeded
    assert result.public_info == {"ok": True}


async def test_a_successful_poll_resets_the_failure_count(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Failures count only in a row: 2 errors, RUNNING, 2 errors, COMPLETED is a success."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[
            POLL_FAILURES["502"](),
            POLL_FAILURES["garbage-body"](),
            running(),
            POLL_FAILURES["404-unknown-token"](),
            POLL_FAILURES["read-timeout"](),
            status("COMPLETED"),
        ]
    )

    result = await client.wait(ENDPOINT, "tok-1")

    assert result.succeeded
    assert poll.call_count == 6


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        pytest.param(
            httpx.Response(
                400, json={"errors": ["token: 'tok-1' is unknown"], "userMessage": "Unknown token"}
            ),
            "Unknown token; token: 'tok-1' is unknown",
            id="400-request-validation-error",
        ),
        pytest.param(
            httpx.Response(
                422,
                json={"detail": [{"loc": ["path", "token"], "msg": "bad", "type": "value_error"}]},
            ),
            "path.token: bad",
            id="422-fastapi",
        ),
        pytest.param(
            httpx.Response(401, json={"detail": "Not authenticated"}),
            "Not authenticated",
            id="401-fastapi",
        ),
    ],
)
async def test_a_4xx_poll_answer_with_an_error_body_fails_at_once(
    client: TechAdapterClient, adapter: respx.MockRouter, answer: httpx.Response, explanation: str
) -> None:
    """The adapter explained why the poll is wrong: no second poll, its message is the error."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(side_effect=[answer, status("COMPLETED")])

    with pytest.raises(AdapterError) as caught:
        await client.wait(ENDPOINT, "tok-1")

    assert poll.call_count == 1
    assert caught.value.message == (
        f"{TEMPLATE} answered {answer.status_code} to GET /v1/provision/tok-1/status: {explanation}"
    )
    assert not isinstance(caught.value, AdapterTransientError)


async def test_a_poll_answer_that_cannot_be_stored_fails_at_once(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A readable COMPLETED whose publicInfo cannot be stored would read the same next time."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(
        side_effect=[
            running(),
            httpx.Response(
                200, content=b'{"status": "COMPLETED", "info": {"publicInfo": {"n": 1e400}}}'
            ),
            status("COMPLETED"),
        ]
    )

    with pytest.raises(AdapterError, match="cannot be stored") as caught:
        await client.wait(ENDPOINT, "tok-1")

    assert poll.call_count == 2
    assert "lost track" not in caught.value.message


async def test_start_then_wait_follows_the_token_the_adapter_gave(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 202 token is polled at ``/v1/provision/{token}/status`` until COMPLETED."""
    adapter.post("/v1/provision").mock(return_value=accepted("tok-9"))
    adapter.get("/v1/provision/tok-9/status").mock(side_effect=[running(), status("COMPLETED")])

    started = await client.start(ENDPOINT, request())
    assert started == Accepted("tok-9")
    result = await client.wait(ENDPOINT, started.token)

    assert result.succeeded


# --- error answers -----------------------------------------------------------------------------


async def test_a_400_request_validation_error_is_kept_in_the_detail(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """statusCode, userMessage, errors, input, inputErrorField and moreInfo are all stored."""
    body = {
        "errors": ["dataProduct.components[0].specific.bucket is missing"],
        "userMessage": "The descriptor is invalid",
        "input": "descriptor.yaml",
        "inputErrorField": "dataProduct.components[0].specific.bucket",
        "moreInfo": {"problems": ["bucket is required"], "solutions": ["add a bucket name"]},
    }
    route = adapter.post("/v1/provision").mock(return_value=httpx.Response(400, json=body))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    error = caught.value
    assert not isinstance(error, AdapterTransientError)
    assert route.call_count == 1
    assert error.detail == {
        "message": error.message,
        "adapter": TEMPLATE,
        "request": "POST /v1/provision",
        "statusCode": 400,
        **body,
    }
    assert error.message == (
        f"{TEMPLATE} answered 400 to POST /v1/provision: The descriptor is invalid; "
        "dataProduct.components[0].specific.bucket is missing; bucket is required"
    )


async def test_a_500_system_error_is_kept_in_the_detail(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A SystemError's ``error`` is stored and quoted; a 500 is not retried."""
    route = adapter.post("/v1/provision").mock(
        return_value=httpx.Response(500, json={"error": "NullPointerException in handler"})
    )

    with pytest.raises(AdapterError, match=r"answered 500.*NullPointerException") as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["statusCode"] == 500
    assert caught.value.detail["error"] == "NullPointerException in handler"
    assert route.call_count == 1
    assert not isinstance(caught.value, AdapterTransientError)


async def test_a_2_1_0_validation_error_is_kept_in_the_detail(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The older ``ValidationError {errors}`` body reads like a RequestValidationError."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(400, json={"errors": ["first", "second"]})
    )

    with pytest.raises(
        AdapterError, match="answered 400 to POST /v1/provision: first; second"
    ) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["errors"] == ["first", "second"]
    assert "userMessage" not in caught.value.detail


async def test_an_error_answer_that_is_not_json_is_shown_as_its_body(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A plain-text 404 is stored as ``body`` and quoted by the message."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(404, text="Not Found"))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message == f"{TEMPLATE} answered 404 to POST /v1/provision: Not Found"
    assert caught.value.detail["body"] == "Not Found"


async def test_an_error_answer_without_content_says_only_the_status(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Nothing to quote: the message is the status code and the request, with no body kept."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(500))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message == f"{TEMPLATE} answered 500 to POST /v1/provision"
    assert "body" not in caught.value.detail


async def test_fastapi_detail_text_is_the_explanation(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FastAPI's default 404 ``{"detail": "Not Found"}`` is read, not lost."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(404, json={"detail": "Not Found"})
    )

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message == f"{TEMPLATE} answered 404 to POST /v1/provision: Not Found"
    assert caught.value.detail["detail"] == "Not Found"
    assert "body" not in caught.value.detail


async def test_fastapi_validation_detail_is_one_line_per_problem(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 422 ``detail`` list of ``{loc, msg, type}`` reads "loc.path: msg" for each item."""
    detail = [
        {"loc": ["body", "descriptor"], "msg": "Field required", "type": "missing"},
        {"loc": ["body", "components", 0, "id"], "msg": "Input should be a valid string"},
        {"msg": "Value error, no location", "type": "value_error"},
        {"loc": ["body"], "type": "no message"},
        "a bare string",
    ]
    adapter.post("/v1/provision").mock(return_value=httpx.Response(422, json={"detail": detail}))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    lines = [
        "body.descriptor: Field required",
        "body.components.0.id: Input should be a valid string",
        "Value error, no location",
        "a bare string",
    ]
    assert caught.value.detail["detail"] == lines
    assert caught.value.message == (
        f"{TEMPLATE} answered 422 to POST /v1/provision: {'; '.join(lines)}"
    )


class StrictProvisioningRequest(BaseModel):
    """What a FastAPI adapter might require: ``owner`` is not in the ProvisioningRequest."""

    descriptorKind: str
    descriptor: str
    owner: str


def fastapi_adapter() -> FastAPI:
    """A FastAPI app (what the python scaffold and the Databricks adapter are) with only
    ``/v1/provision``, whose model refuses provisioner's request."""
    app = FastAPI()

    @app.post("/v1/provision")
    async def provision(body: StrictProvisioningRequest) -> dict[str, str]:
        return {"status": "COMPLETED"}

    return app


async def test_a_real_fastapi_adapter_s_error_bodies_are_read() -> None:
    """FastAPI's own 422 (a body its model refuses) and 404 (a route it lacks) are explained."""
    real = TechAdapterClient(POLICY, transport=httpx.ASGITransport(app=fastapi_adapter()))
    try:
        with pytest.raises(AdapterError) as refused:
            await real.start(ENDPOINT, request())
        with pytest.raises(AdapterError) as missing:
            await real.start(ENDPOINT, request(TaskAction.UNPROVISION))
    finally:
        await real.aclose()

    assert refused.value.message == (
        f"{TEMPLATE} answered 422 to POST /v1/provision: body.owner: Field required"
    )
    assert missing.value.message == f"{TEMPLATE} answered 404 to POST /v1/unprovision: Not Found"


async def test_a_problem_given_twice_is_shown_once(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The same text in userMessage, error, errors and moreInfo.problems appears once, in order;
    the stored fields stay as sent."""
    body = {
        "error": "bucket exists",
        "userMessage": "Cannot create the bucket",
        "errors": ["bucket exists", "quota exceeded"],
        "moreInfo": {"problems": ["quota exceeded", "bucket exists"], "solutions": ["rename"]},
    }
    adapter.post("/v1/provision").mock(return_value=httpx.Response(500, json=body))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message == (
        f"{TEMPLATE} answered 500 to POST /v1/provision: "
        "Cannot create the bucket; bucket exists; quota exceeded"
    )
    assert caught.value.detail["moreInfo"] == body["moreInfo"]
    assert caught.value.detail["errors"] == body["errors"]


async def test_a_field_of_the_wrong_type_does_not_hide_the_others(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """``errors`` sent as one string is dropped; ``userMessage`` beside it is still read."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(
            400, json={"errors": "one string", "userMessage": "The descriptor is invalid"}
        )
    )

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message.endswith(": The descriptor is invalid")
    assert "errors" not in caught.value.detail


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        pytest.param(
            b'{"message": "boom", "status": 500}',
            '{"message": "boom", "status": 500}',
            id="json-without-known-fields",
        ),
        pytest.param(b"<html>\n<h1>Bad</h1>\n</html>", "<html> <h1>Bad</h1> </html>", id="html"),
        pytest.param(b"stack\x00trace\x1b[31m", "stack\ufffdtrace\ufffd[31m", id="control"),
        pytest.param(b"caf\xc3\xa9 \xff", "caf\u00e9 \ufffd", id="not-utf-8"),
    ],
)
async def test_an_error_body_without_known_fields_is_quoted_printable(
    client: TechAdapterClient, adapter: respx.MockRouter, body: bytes, shown: str
) -> None:
    """No known field: the raw body is the explanation, on one line, every character printable."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(500, content=body))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message == f"{TEMPLATE} answered 500 to POST /v1/provision: {shown}"
    assert caught.value.detail["body"].isprintable() or "\n" in caught.value.detail["body"]


async def test_a_long_error_body_is_bounded(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 100 KB page is kept as its first 2,048 characters, in the detail and in the message."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(502, text="x" * 100_000))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["body"] == "x" * 2048 + "…"
    assert len(caught.value.message) < 2200


async def test_long_adapter_texts_and_lists_are_bounded(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 1,000-item ``errors`` keeps 100 items, each text cut at 2,048 characters."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(
            400, json={"errors": [f"{n} " + "e" * 3000 for n in range(1_000)]}
        )
    )

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    errors = caught.value.detail["errors"]
    assert len(errors) == 100
    assert {len(error) for error in errors} <= {2049}
    assert len(caught.value.message) < 2200


# --- privateInfo in error answers -------------------------------------------------------------

SECRET = "hunter2-do-not-show"


async def test_private_info_in_more_info_is_not_kept(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """``moreInfo.privateInfo`` (and any key the spec does not define) is dropped."""
    body = {
        "error": "boom",
        "moreInfo": {"problems": ["p"], "solutions": ["s"], "privateInfo": {"pw": SECRET}},
    }
    adapter.post("/v1/provision").mock(return_value=httpx.Response(500, json=body))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["moreInfo"] == {"problems": ["p"], "solutions": ["s"]}
    assert SECRET not in repr(caught.value.detail)


async def test_private_info_in_a_json_text_is_stripped_and_the_rest_kept(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """An ``error`` whose text is a JSON answer keeps that JSON, without its privateInfo."""
    quoted = {"status": "FAILED", "info": {"publicInfo": {"a": 1}, "privateInfo": {"pw": SECRET}}}
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(500, json={"error": json.dumps(quoted)})
    )

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert json.loads(caught.value.detail["error"]) == {
        "status": "FAILED",
        "info": {"publicInfo": {"a": 1}},
    }
    assert SECRET not in repr(caught.value.detail)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"provision failed: {{'privateInfo': {{'pw': '{SECRET}'}}}}", id="repr"),
        pytest.param(f'failed with {{"privateInfo": "{SECRET}"}} attached', id="json-in-text"),
        pytest.param(f'{{"privateInfo": "{SECRET}", broken', id="broken-json"),
    ],
)
async def test_a_text_that_mentions_private_info_is_withheld(
    client: TechAdapterClient, adapter: respx.MockRouter, text: str
) -> None:
    """Text that cannot be cleaned (a Python repr, JSON inside a sentence) is withheld whole,
    from the stored fields and from the message."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(400, json={"userMessage": text, "errors": ["kept"]})
    )

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["userMessage"] == "(withheld: it mentions privateInfo)"
    assert caught.value.detail["errors"] == ["kept"]
    assert SECRET not in repr(caught.value.detail)


async def test_a_failed_status_keeps_no_private_info_in_its_error_or_logs(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FAILED with privateInfo quoted in ``result`` and in ERROR logs: shown without it; the
    answer's own privateInfo is still returned for the adapters."""
    logs = [
        {"timestamp": "t", "level": "ERROR", "message": json.dumps({"privateInfo": SECRET})},
        {"timestamp": "t", "level": "ERROR", "message": f"privateInfo={SECRET}"},
    ]
    adapter.post("/v1/provision").mock(
        return_value=status(
            "FAILED",
            result=json.dumps({"why": "quota", "privateInfo": {"pw": SECRET}}),
            info={"publicInfo": {"privateInfo": SECRET}, "privateInfo": {"pw": "kept"}},
            logs=logs,
        )
    )

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert SECRET not in repr((result.error, result.logs, result.public_info))
    assert result.error is not None
    assert result.error["result"] == '{"why": "quota"}'
    assert result.private_info == {"pw": "kept"}


async def test_an_unreadable_body_mentioning_private_info_is_withheld(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 200 that is not JSON but mentions privateInfo is not quoted in the error."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(200, text=f"status=COMPLETED privateInfo={SECRET}")
    )

    with pytest.raises(AdapterError, match="unreadable answer") as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.detail["body"] == "(the body is withheld: it mentions privateInfo)"
    assert SECRET not in caught.value.message


# --- untrusted answers: values that cannot be stored, sizes ----------------------------------


def nested(depth: int) -> str:
    """An answer whose containers are nested ``depth`` deep, publicInfo's among them."""
    inner = "{}" if depth <= 3 else "[" * (depth - 3) + "]" * (depth - 3)
    return f'{{"status": "COMPLETED", "info": {{"publicInfo": {{"deep": {inner}}}}}}}'


@pytest.mark.parametrize(
    ("public_info", "reason"),
    [
        pytest.param('{"size": 1e400}', "info.publicInfo.size: the number 1e400 is out of range"),
        pytest.param(
            '{"size": -1E+999}', "info.publicInfo.size: the number -1E+999 is out of range"
        ),
        pytest.param('{"x": NaN}', "info.publicInfo.x: NaN is not a JSON number"),
        pytest.param(
            '{"x": [1, -Infinity]}', "info.publicInfo.x[1]: -Infinity is not a JSON number"
        ),
        pytest.param(
            '{"name": "a\\u0000b"}', "info.publicInfo.name: the text holds a NUL character"
        ),
        pytest.param('{"a\\u0000": 1}', "info.publicInfo.a?: the key holds a NUL character"),
        pytest.param(
            '{"name": "\\ud800"}', "info.publicInfo.name: the text holds a lone surrogate"
        ),
    ],
)
async def test_an_answer_that_cannot_be_stored_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter, public_info: str, reason: str
) -> None:
    """Values neither database (nor the API's encoder) can hold fail the call, naming where;
    the answer's privateInfo is not in the error."""
    body = (
        '{"status": "COMPLETED", "info": {"privateInfo": {"pw": "'
        + SECRET
        + '"}, "publicInfo": '
        + public_info
        + "}}"
    )
    adapter.post("/v1/provision").mock(return_value=httpx.Response(200, content=body.encode()))

    with pytest.raises(AdapterError) as caught:
        await client.start(ENDPOINT, request())

    assert caught.value.message.startswith(
        f"{TEMPLATE} gave an invalid answer to POST /v1/provision: the answer cannot be stored ("
        f"{reason}"
    )
    assert not isinstance(caught.value, AdapterTransientError)
    assert SECRET not in repr(caught.value.detail)


async def test_nesting_up_to_the_descriptor_limit_is_accepted(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """64 levels of containers, the answer's own included, are read."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(200, content=nested(64).encode())
    )

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert result.succeeded


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_nesting_beyond_the_limit_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter, depth: int
) -> None:
    """65 levels, or enough to exhaust the JSON decoder's recursion: refused, not a crash."""
    adapter.post("/v1/provision").mock(
        return_value=httpx.Response(200, content=nested(depth).encode())
    )

    with pytest.raises(AdapterError, match="nested deeper than 64 levels"):
        await client.start(ENDPOINT, request())


async def chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """``body`` streamed in pieces, with no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


LIMITED = ClientPolicy(max_answer_bytes=64 * 1024, max_connections=8, poll_initial_seconds=0.001)
BIG_LOGS = [{"timestamp": "t", "level": "INFO", "message": "m" * 1000}] * 100


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda: status("COMPLETED", logs=BIG_LOGS), id="content-length"),
        pytest.param(
            lambda: httpx.Response(
                200, content=chunks(json.dumps({"status": "COMPLETED", "logs": BIG_LOGS}).encode())
            ),
            id="chunked",
        ),
        pytest.param(
            lambda: httpx.Response(
                200,
                content=gzip.compress(
                    json.dumps({"status": "COMPLETED", "logs": BIG_LOGS}).encode()
                ),
                headers={"content-encoding": "gzip"},
            ),
            id="gzip",
        ),
    ],
)
async def test_an_answer_over_the_size_limit_is_an_adapter_error(
    adapter: respx.MockRouter, answer: Callable[[], httpx.Response]
) -> None:
    """Over ``max_answer_bytes`` (decompressed), with or without a Content-Length: refused."""
    adapter.post("/v1/provision").mock(side_effect=lambda _: answer())
    limited = TechAdapterClient(LIMITED)
    try:
        with pytest.raises(AdapterError, match="answer too large") as caught:
            await limited.start(ENDPOINT, request())
    finally:
        await limited.aclose()

    assert caught.value.detail["maxAnswerBytes"] == 64 * 1024
    assert not isinstance(caught.value, AdapterTransientError)


async def test_a_poll_answer_over_the_size_limit_fails_at_once(adapter: respx.MockRouter) -> None:
    """Too large on a poll is not a transient failure: one poll, then the error."""
    poll = adapter.get("/v1/provision/tok-1/status").mock(
        return_value=status("RUNNING", logs=BIG_LOGS)
    )
    limited = TechAdapterClient(LIMITED)
    try:
        with pytest.raises(AdapterError, match="answer too large"):
            await limited.wait(ENDPOINT, "tok-1")
    finally:
        await limited.aclose()

    assert poll.call_count == 1


async def test_an_answer_just_under_the_size_limit_is_read(adapter: respx.MockRouter) -> None:
    """The limit is on the body: a COMPLETED of 60 KiB is read with a 64 KiB limit."""
    logs = [{"timestamp": "t", "level": "INFO", "message": "m" * 1000}] * 55
    adapter.post("/v1/provision").mock(return_value=status("COMPLETED", logs=logs))
    limited = TechAdapterClient(LIMITED)
    try:
        result = await limited.start(ENDPOINT, request())
    finally:
        await limited.aclose()

    assert isinstance(result, ProvisioningResult)
    assert len(result.logs) == 55


# --- retries of the provision POST ------------------------------------------------------------


@pytest.mark.parametrize("code", [502, 504])
async def test_a_502_or_504_on_the_provision_post_is_not_retried(
    client: TechAdapterClient, adapter: respx.MockRouter, code: int
) -> None:
    """A gateway error may hide a request the adapter acted on: it is not sent again."""
    route = adapter.post("/v1/provision").mock(
        side_effect=[httpx.Response(code), status("COMPLETED")]
    )

    with pytest.raises(AdapterTransientError) as caught:
        await client.start(ENDPOINT, request())

    assert route.call_count == 1
    assert caught.value.detail["statusCode"] == code
    assert not caught.value.not_processed


async def test_a_503_is_retried_until_it_succeeds(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """503 means not processed: the same POST is sent again and its answer used."""
    route = adapter.post("/v1/provision").mock(
        side_effect=[httpx.Response(503), status("COMPLETED")]
    )

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert result.succeeded
    assert route.call_count == 2
    assert route.calls[0].request.content == route.calls[1].request.content


async def test_a_503_is_retried_up_to_the_attempt_limit(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """After ``retry_attempts`` 503 answers the call fails as transient, not processed."""
    route = adapter.post("/v1/provision").mock(return_value=httpx.Response(503))

    with pytest.raises(AdapterTransientError, match="answered 503") as caught:
        await client.start(ENDPOINT, request())

    assert route.call_count == RETRIES
    assert caught.value.not_processed


async def test_a_refused_connection_is_retried_until_it_succeeds(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """ConnectError means the request never left: it is sent again."""
    route = adapter.post("/v1/provision").mock(
        side_effect=[httpx.ConnectError("refused"), status("COMPLETED")]
    )

    result = await client.start(ENDPOINT, request())

    assert isinstance(result, ProvisioningResult)
    assert result.succeeded
    assert route.call_count == 2


async def test_a_refused_connection_is_retried_up_to_the_attempt_limit(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Refused every time: AdapterTransientError after ``retry_attempts`` tries."""
    route = adapter.post("/v1/provision").mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(AdapterTransientError, match="cannot reach") as caught:
        await client.start(ENDPOINT, request())

    assert route.call_count == RETRIES
    assert caught.value.not_processed
    assert "ConnectError" in str(caught.value.detail["cause"])


async def test_retries_back_off_doubling(
    client: TechAdapterClient, adapter: respx.MockRouter, sleeps: list[float]
) -> None:
    """The waits between attempts are 0.1 s, then 0.2 s: doubling from 0.1 s."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(503))

    with pytest.raises(AdapterTransientError):
        await client.start(ENDPOINT, request())

    assert sleeps == pytest.approx([0.1, 0.2])


async def test_retries_stop_at_the_total_time_budget(adapter: respx.MockRouter) -> None:
    """With 0.25 s allowed, the second backoff (0.2 s) would overrun: two attempts only."""
    route = adapter.post("/v1/provision").mock(return_value=httpx.Response(503))
    adapter_client = TechAdapterClient(
        ClientPolicy(retry_attempts=10, retry_max_seconds=0.25, max_connections=8)
    )

    try:
        with pytest.raises(AdapterTransientError):
            await adapter_client.start(ENDPOINT, request())
    finally:
        await adapter_client.aclose()

    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ReadError("connection reset by peer"), id="read-error"),
        pytest.param(
            httpx.RemoteProtocolError("peer closed connection without response"),
            id="remote-protocol-error",
        ),
        pytest.param(httpx.ReadTimeout("timed out"), id="read-timeout"),
    ],
)
async def test_a_connection_lost_mid_request_is_not_retried(
    client: TechAdapterClient, adapter: respx.MockRouter, failure: Exception
) -> None:
    """Once the request may have arrived, it is never sent again; the message says why."""
    route = adapter.post("/v1/provision").mock(side_effect=[failure, status("COMPLETED")])

    with pytest.raises(AdapterError, match="the adapter may have received the request") as caught:
        await client.start(ENDPOINT, request())

    assert route.call_count == 1
    assert isinstance(caught.value, AdapterTransientError)
    assert caught.value.not_processed is False  # what keeps it from being sent again
    assert type(failure).__name__ in str(caught.value.detail["cause"])


# --- the request -------------------------------------------------------------------------------


async def test_the_provision_body_has_kind_descriptor_and_remove_data(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The body is exactly descriptorKind, descriptor (the YAML text) and removeData false."""
    route = adapter.post("/v1/provision").mock(return_value=status("COMPLETED"))
    provision = request()

    await client.start(ENDPOINT, provision)

    assert sent(route) == {
        "descriptorKind": "COMPONENT_DESCRIPTOR",
        "descriptor": provision.descriptor.text,
        "removeData": False,
    }


async def test_the_unprovision_body_carries_remove_data_and_the_latest_descriptor(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """UNPROVISION posts to /v1/unprovision with removeData true and latestEnrichedDescriptor."""
    latest = SharedText("id: urn:x\ninfo:\n  publicInfo: {}\n")
    route = adapter.post("/v1/unprovision").mock(return_value=status("COMPLETED"))
    unprovision = request(TaskAction.UNPROVISION, remove_data=True, latest=latest)

    await client.start(ENDPOINT, unprovision)

    assert sent(route) == {
        "descriptorKind": "COMPONENT_DESCRIPTOR",
        "descriptor": unprovision.descriptor.text,
        "removeData": True,
        "latestEnrichedDescriptor": latest.text,
    }


async def test_the_body_is_the_json_that_json_dumps_would_write(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Quotes, backslashes, control and non-ASCII characters: same data as ``json.dumps``."""
    route = adapter.post("/v1/provision").mock(return_value=status("COMPLETED"))
    latest = SharedText('"\\\n\u2028ü\x00')
    provision = request(latest=latest)

    await client.start(ENDPOINT, provision)

    expected = json.dumps(
        {
            "descriptorKind": "COMPONENT_DESCRIPTOR",
            "descriptor": provision.descriptor.text,
            "removeData": False,
            "latestEnrichedDescriptor": latest.text,
        }
    )
    content = route.calls.last.request.content
    assert json.loads(content.decode("utf-8")) == json.loads(expected)


async def test_the_descriptor_text_reads_back_as_the_unit_and_component(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """What the adapter receives in ``descriptor`` is the COMPONENT_DESCRIPTOR document."""
    route = adapter.post("/v1/provision").mock(return_value=status("COMPLETED"))

    await client.start(ENDPOINT, request())

    assert yaml.safe_load(sent(route)["descriptor"]) == {
        "dataProduct": DOCUMENT,
        "componentIdToProvision": COMPONENT_ID,
    }


async def test_endpoint_headers_are_sent_on_posts_and_polls(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The registry's headers (e.g. Authorization) go with every call, and JSON is declared."""
    post = adapter.post("/v1/provision").mock(return_value=accepted())
    poll = adapter.get("/v1/provision/tok-1/status").mock(return_value=status("COMPLETED"))

    await client.start(ENDPOINT, request())
    await client.wait(ENDPOINT, "tok-1")

    for route in (post, poll):
        headers = route.calls.last.request.headers
        assert headers["authorization"] == "Bearer s3cret"
        assert headers["x-tenant"] == "tenant-1"
        assert "application/json" in headers["accept"]
    assert post.calls.last.request.headers["content-type"] == "application/json"


# --- validate ----------------------------------------------------------------------------------


async def test_validate_v1_answers_valid(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """``/v1/validate`` with the provisioning body; ``valid: true`` has no errors."""
    route = adapter.post("/v1/validate").mock(
        return_value=httpx.Response(200, json={"valid": True})
    )

    outcome = await client.validate(ENDPOINT, request())

    assert outcome == ValidationOutcome(True, [])
    assert sent(route)["descriptorKind"] == "COMPONENT_DESCRIPTOR"


async def test_validate_v1_answers_invalid_with_errors(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """``valid: false`` carries the ``error.errors`` list."""
    adapter.post("/v1/validate").mock(
        return_value=httpx.Response(
            200, json={"valid": False, "error": {"errors": ["name is missing", "bad kind"]}}
        )
    )

    assert await client.validate(ENDPOINT, request()) == ValidationOutcome(
        False, ["name is missing", "bad kind"]
    )


async def test_validate_v1_error_answer_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 400 to /v1/validate is an AdapterError with the adapter's explanation."""
    adapter.post("/v1/validate").mock(
        return_value=httpx.Response(400, json={"errors": ["unreadable descriptor"]})
    )

    with pytest.raises(AdapterError, match="answered 400 to POST /v1/validate"):
        await client.validate(ENDPOINT, request())


async def test_validate_is_idempotent_so_a_502_is_retried(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """Unlike provision, validation may be repeated after a gateway error."""
    route = adapter.post("/v1/validate").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json={"valid": True})]
    )

    assert await client.validate(ENDPOINT, request()) == ValidationOutcome(True, [])
    assert route.call_count == 2


async def test_validate_v2_polls_and_reads_info_public_info(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """2.2.0: 202 token, then ``/v2/validate/{token}/status`` (token quoted) until COMPLETED."""
    answers = iter(
        [
            status("RUNNING"),
            status(
                "COMPLETED",
                info={"publicInfo": {"valid": False, "error": {"errors": ["no owner"]}}},
            ),
        ]
    )
    polled: list[bytes] = []

    def answer(poll: httpx.Request) -> httpx.Response:
        polled.append(poll.url.raw_path)
        return next(answers)

    post = adapter.post("/v2/validate").mock(return_value=accepted("v/1"))
    adapter.get(path__startswith="/v2/validate/").mock(side_effect=answer)

    outcome = await client.validate(ASYNC_VALIDATING, request())

    assert outcome == ValidationOutcome(False, ["no owner"])
    assert post.call_count == 1
    assert polled == [b"/v2/validate/v%2F1/status"] * 2


async def test_validate_v2_reads_the_scaffold_result_field(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The python scaffold answers ``result`` instead of ``info.publicInfo``."""
    adapter.post("/v2/validate").mock(return_value=accepted("v1"))
    adapter.get("/v2/validate/v1/status").mock(
        return_value=status("COMPLETED", result={"valid": True})
    )

    assert await client.validate(ASYNC_VALIDATING, request()) == ValidationOutcome(True, [])


async def test_validate_v2_failed_is_an_invalid_outcome(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FAILED (the validation itself crashed) is reported as not valid, with a message."""
    adapter.post("/v2/validate").mock(return_value=accepted("v1"))
    adapter.get("/v2/validate/v1/status").mock(return_value=status("FAILED"))

    assert await client.validate(ASYNC_VALIDATING, request()) == ValidationOutcome(
        False, ["the Tech Adapter could not validate the request"]
    )


async def test_validate_v2_needs_a_202(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 200 to /v2/validate is not the asynchronous answer asked for."""
    adapter.post("/v2/validate").mock(return_value=httpx.Response(200, json={"valid": True}))

    with pytest.raises(AdapterError, match="answered 200 to POST /v2/validate"):
        await client.validate(ASYNC_VALIDATING, request())


# --- updateacl ---------------------------------------------------------------------------------


async def test_update_acl_sends_refs_and_provision_info(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """The body is ``{refs, provisionInfo: {request, result}}`` and a 200 is the result."""
    route = adapter.post("/v1/updateacl").mock(
        return_value=status("COMPLETED", info={"publicInfo": {"granted": 2}})
    )

    result = await client.update_acl(
        ENDPOINT,
        refs=["user:alice", "group:dev"],
        request="descriptor: yaml\n",
        result='{"status": "COMPLETED"}',
    )

    assert sent(route) == {
        "refs": ["user:alice", "group:dev"],
        "provisionInfo": {"request": "descriptor: yaml\n", "result": '{"status": "COMPLETED"}'},
    }
    assert result.succeeded
    assert result.public_info == {"granted": 2}
    assert route.calls.last.request.headers["authorization"] == "Bearer s3cret"


async def test_update_acl_polls_a_202_token(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """An asynchronous ACL update is polled at the provision status path."""
    adapter.post("/v1/updateacl").mock(return_value=accepted("acl-1"))
    adapter.get("/v1/provision/acl-1/status").mock(side_effect=[running(), status("COMPLETED")])

    result = await client.update_acl(ENDPOINT, refs=["user:bob"], request="r", result="s")

    assert result.succeeded


async def test_update_acl_error_answer_is_an_adapter_error(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 400 to /v1/updateacl is an AdapterError."""
    adapter.post("/v1/updateacl").mock(
        return_value=httpx.Response(400, json={"errors": ["unknown principal"]})
    )

    with pytest.raises(AdapterError, match="unknown principal"):
        await client.update_acl(ENDPOINT, refs=["user:x"], request="r", result="s")


# --- reverse provisioning ----------------------------------------------------------------------


REVERSE_BODY = {
    "useCaseTemplateId": "urn:dmb:utm:snowflake-outputport-template:0.0.0",
    "environment": "development",
    "params": {"database": "DB"},
    "catalogInfo": {"spec": {"mesh": {"name": "op"}}},
}


async def test_reverse_provisioning_answered_at_once(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 200 ReverseProvisioningStatus gives its updates and logs; the body is sent as given."""
    logs = [{"timestamp": "t", "level": "INFO", "message": "imported"}]
    route = adapter.post("/v1/reverse-provisioning").mock(
        return_value=status("COMPLETED", updates={"spec.mesh.specific": {"a": 1}}, logs=logs)
    )

    outcome = await client.reverse_provision(ENDPOINT, REVERSE_BODY)

    assert outcome == ReverseProvisioningOutcome(True, {"spec.mesh.specific": {"a": 1}}, logs)
    assert sent(route) == REVERSE_BODY


async def test_reverse_provisioning_polls_a_202_token(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """A 202 is polled at ``/v1/reverse-provisioning/{token}/status``."""
    adapter.post("/v1/reverse-provisioning").mock(return_value=accepted("rp-1"))
    poll = adapter.get("/v1/reverse-provisioning/rp-1/status").mock(
        side_effect=[running(), status("COMPLETED", updates={"x": 1})]
    )

    outcome = await client.reverse_provision(ENDPOINT, REVERSE_BODY)

    assert outcome == ReverseProvisioningOutcome(True, {"x": 1}, [])
    assert poll.call_count == 2


async def test_reverse_provisioning_failed_is_not_succeeded(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    """FAILED is an outcome with ``succeeded`` false and the adapter's logs."""
    logs = [{"timestamp": "t", "level": "ERROR", "message": "no such table"}]
    adapter.post("/v1/reverse-provisioning").mock(return_value=status("FAILED", logs=logs))

    outcome = await client.reverse_provision(ENDPOINT, REVERSE_BODY)

    assert outcome == ReverseProvisioningOutcome(False, {}, logs)


def test_every_adapter_pool_shares_one_tls_context_that_verifies_certificates() -> None:
    """Building a TLS context loads the trust store (tens of milliseconds): the pools of every
    adapter share one, and it still verifies certificates and host names."""
    timeout = httpx.Timeout(1.0)
    first = ShardedClient(base_url="https://a.example", headers={}, capacity=64, timeout=timeout)
    second = ShardedClient(base_url="https://b.example", headers={}, capacity=8, timeout=timeout)
    context = tls_context()
    assert context is tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    pools = [client._transport._pool for client in (*first._clients, *second._clients)]
    assert len(pools) == 9
    assert all(pool._ssl_context is context for pool in pools)
