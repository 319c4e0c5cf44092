"""The mock Tech Adapter, driven over its HTTP interface in-process."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from provisioner.mockadapter import create_mock_app
from provisioner.mockadapter.descriptors import (
    DescriptorKind,
    DescriptorReader,
    read_component_fully,
    split_component_descriptor,
)
from provisioner.mockadapter.errors import InvalidRequestError
from tests.fixtures import descriptor_files
from tests.support import wait_until

DP_ID = "urn:dmb:dp:healthcare:vaccinations:0"
CID = "urn:dmb:cmp:healthcare:vaccinations:0:storage"
OTHER_ID = "urn:dmb:cmp:healthcare:vaccinations:0:hdfs-output-port"
TOKEN_LENGTH = 32


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def component(component_id: str = CID, **mock: Any) -> dict[str, Any]:
    """A component whose `specific.mock` holds the given knobs."""
    return {
        "kind": "storage",
        "id": component_id,
        "name": component_id.rsplit(":", 1)[-1],
        "dependsOn": [],
        "specific": {"mock": mock} if mock else {},
    }


def data_product(*components: dict[str, Any], **mock: Any) -> dict[str, Any]:
    """A data product with the given components and its own `specific.mock`."""
    return {
        "id": DP_ID,
        "name": "Vaccinations",
        "kind": "dataproduct",
        "domain": "healthcare",
        "version": "0.1.0",
        "environment": "development",
        "specific": {"mock": mock} if mock else {},
        "components": list(components),
    }


def component_descriptor(dp: dict[str, Any], component_id: str = CID) -> str:
    """A COMPONENT_DESCRIPTOR written as the coordinator writes it."""
    head = yaml.safe_dump({"dataProduct": dp}, sort_keys=False)
    return f"{head}componentIdToProvision: {component_id}\n"


def request_for(
    component_id: str = CID, *, remove_data: bool = False, **mock: Any
) -> dict[str, Any]:
    """A COMPONENT_DESCRIPTOR ProvisioningRequest for one component with the given knobs."""
    dp = data_product(component(component_id, **mock), component(OTHER_ID))
    return {
        "descriptorKind": "COMPONENT_DESCRIPTOR",
        "descriptor": component_descriptor(dp, component_id),
        "removeData": remove_data,
    }


@asynccontextmanager
async def mock_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mock") as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with mock_client(create_mock_app(clock=clock)) as client:
        yield client


async def provision(
    client: httpx.AsyncClient, body: dict[str, Any], action: str = "provision"
) -> httpx.Response:
    return await client.post(f"/v1/{action}", json=body)


async def poll(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"/v1/provision/{token}/status")


async def poll_status(client: httpx.AsyncClient, token: str) -> str:
    response = await poll(client, token)
    assert response.status_code == 200
    status: str = response.json()["status"]
    return status


async def components(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/mock/components")).json()  # type: ignore[no-any-return]


async def calls(client: httpx.AsyncClient, action: str | None = None) -> dict[str, Any]:
    params = {"action": action} if action else {}
    return (await client.get("/mock/calls", params=params)).json()  # type: ignore[no-any-return]


def assert_request_validation_error(
    response: httpx.Response, problem: str, status_code: int = 400
) -> None:
    assert response.status_code == status_code
    body = response.json()
    assert any(problem in error for error in body["errors"]), body
    assert body["userMessage"]
    assert body["moreInfo"]["problems"] == body["errors"]
    assert body["moreInfo"]["solutions"]


# --- provision and unprovision, sync ----------------------------------------------------------


async def test_sync_provision_answers_completed_with_info_and_logs(
    client: httpx.AsyncClient,
) -> None:
    """A sync provision answers 200 COMPLETED with publicInfo, privateInfo and an INFO log."""
    response = await provision(client, request_for())

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert CID in body["result"]
    public_info = body["info"]["publicInfo"]
    assert public_info["componentId"] == {"type": "string", "label": "Component", "value": CID}
    assert public_info["provisionedBy"]["value"] == "mock-adapter"
    assert body["info"]["privateInfo"] == {"mockSecret": f"secret-{CID}"}
    [log] = body["logs"]
    assert log["level"] == "INFO"
    assert set(log) == {"timestamp", "level", "message", "phase"}


async def test_sync_provision_records_component_as_provisioned(client: httpx.AsyncClient) -> None:
    """A successful provision is what the adapter believes is deployed."""
    await provision(client, request_for())

    assert (await components(client))[CID] == {
        "provisioned": True,
        "provisionCount": 1,
        "unprovisionCount": 0,
        "lastRemoveData": None,
        "validateCount": 0,
        "aclRefs": [],
        "aclResult": None,
    }


async def test_sync_provision_takes_its_latency(client: httpx.AsyncClient) -> None:
    """A sync operation answers only after latencyMs."""
    await provision(client, request_for(latencyMs=30))

    [call] = (await calls(client))["calls"]
    assert call["answeredAt"] - call["receivedAt"] >= 0.025


async def test_server_default_mode_applies_when_component_is_silent() -> None:
    """A component without `mode` gets the server's default mode."""
    async with mock_client(create_mock_app(default_mode="async")) as client:
        response = await provision(client, request_for())

    assert response.status_code == 202


def test_nonsense_server_defaults_are_refused() -> None:
    """The server refuses an unknown default mode or a negative default latency."""
    with pytest.raises(ValueError, match="default_mode"):
        create_mock_app(default_mode="eventually")
    with pytest.raises(ValueError, match="default_latency_ms"):
        create_mock_app(default_latency_ms=-1)


async def test_unprovision_records_remove_data(client: httpx.AsyncClient) -> None:
    """A completed unprovision marks the component not provisioned and records removeData."""
    await provision(client, request_for())
    response = await provision(client, request_for(remove_data=True), "unprovision")

    assert response.json()["status"] == "COMPLETED"
    record = (await components(client))[CID]
    assert record["provisioned"] is False
    assert record["unprovisionCount"] == 1
    assert record["lastRemoveData"] is True
    assert (await calls(client, "unprovision"))["calls"][0]["removeData"] is True


async def test_dataproduct_descriptor_steers_by_the_data_product(client: httpx.AsyncClient) -> None:
    """A DATAPRODUCT_DESCRIPTOR takes its behaviour and id from the data product itself."""
    dp = data_product(component(), mode="async", tokenFormat="text", polls=0)
    body = {"descriptorKind": "DATAPRODUCT_DESCRIPTOR", "descriptor": yaml.safe_dump(dp)}

    response = await provision(client, body)

    assert response.status_code == 202
    assert await poll_status(client, response.text) == "COMPLETED"
    assert (await components(client))[DP_ID]["provisioned"] is True
    assert CID not in await components(client)


# --- async -----------------------------------------------------------------------------------


async def test_async_provision_answers_json_quoted_token(client: httpx.AsyncClient) -> None:
    """An async provision answers 202 at once with the token as a JSON string."""
    response = await provision(client, request_for(mode="async"))

    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    token = response.json()
    assert isinstance(token, str)
    assert len(token) == TOKEN_LENGTH
    assert (await calls(client))["calls"][0]["token"] == token


async def test_async_provision_answers_raw_text_token(client: httpx.AsyncClient) -> None:
    """With tokenFormat text the 202 token is sent as raw text/plain."""
    response = await provision(client, request_for(mode="async", tokenFormat="text"))

    assert response.status_code == 202
    assert response.headers["content-type"].startswith("text/plain")
    assert len(response.text) == TOKEN_LENGTH
    assert await poll_status(client, response.text) == "RUNNING"


async def test_async_status_is_running_until_polls_answered(client: httpx.AsyncClient) -> None:
    """With no latency, the status answers RUNNING `polls` times, then COMPLETED."""
    token = (await provision(client, request_for(mode="async", polls=3))).json()

    statuses = [await poll_status(client, token) for _ in range(4)]

    assert statuses == ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"]


async def test_async_status_is_running_until_latency_passed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Enough polls are not enough: the status stays RUNNING until latencyMs has passed."""
    token = (await provision(client, request_for(mode="async", latencyMs=5_000))).json()
    assert [await poll_status(client, token) for _ in range(3)] == ["RUNNING"] * 3

    clock.advance(5.0)

    assert await poll_status(client, token) == "COMPLETED"


async def test_async_provision_counts_when_completed_is_reported(
    client: httpx.AsyncClient,
) -> None:
    """An async provision is recorded as deployed only once its status reports COMPLETED."""
    token = (await provision(client, request_for(mode="async", polls=1))).json()
    await poll_status(client, token)
    assert (await components(client))[CID]["provisioned"] is False

    await poll_status(client, token)

    assert (await components(client))[CID]["provisioned"] is True


async def test_async_final_answer_is_repeated_and_counted_once(client: httpx.AsyncClient) -> None:
    """Polling a finished token gives the same final answer; the provision counts once."""
    token = (await provision(client, request_for(mode="async", polls=0))).json()

    first, again = await poll(client, token), await poll(client, token)

    assert first.json() == again.json()
    assert (await components(client))[CID]["provisionCount"] == 1


async def test_unknown_token_is_not_found(client: httpx.AsyncClient) -> None:
    """Polling a token the adapter never handed out answers 404, with the explanation."""
    assert_request_validation_error(await poll(client, "f" * TOKEN_LENGTH), "unknown", 404)


async def test_never_finish_keeps_the_token_running(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With neverFinish the status answers RUNNING however long and often it is polled."""
    token = (await provision(client, request_for(mode="async", neverFinish=True))).json()
    clock.advance(86_400)

    assert [await poll_status(client, token) for _ in range(5)] == ["RUNNING"] * 5


async def test_forget_tokens_makes_earlier_tokens_unknown(client: httpx.AsyncClient) -> None:
    """After forget-tokens, polling an earlier token answers 404, as after an adapter restart."""
    token = (await provision(client, request_for(mode="async"))).json()

    forgotten = await client.post("/mock/forget-tokens")

    assert forgotten.json() == {"forgotten": 1}
    assert_request_validation_error(await poll(client, token), "unknown", 404)


async def test_forget_tokens_ends_unfinished_operations(client: httpx.AsyncClient) -> None:
    """Forgotten operations are no longer in flight."""
    for component_id in (CID, OTHER_ID):
        await provision(client, request_for(component_id, mode="async", neverFinish=True))
    await client.post("/mock/forget-tokens")
    await client.delete("/mock/calls")

    await provision(client, request_for(mode="async"))

    assert (await calls(client))["maxInFlight"] == 1


# --- gates -----------------------------------------------------------------------------------


async def gate_state(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    state: dict[str, Any] = (await client.get("/mock/gates")).json()[name]
    return state


async def test_a_gate_holds_a_sync_answer_until_it_is_opened(client: httpx.AsyncClient) -> None:
    """The POST is received (and logged) at once, but answered only once the gate opens."""
    answer = asyncio.create_task(provision(client, request_for(gate="g1")))

    async def held() -> bool:
        return bool((await client.get("/mock/gates")).json().get("g1", {}).get("waiting") == 1)

    await wait_until(held)
    assert not answer.done()
    assert (await calls(client, "provision"))["calls"][0]["answeredAt"] is None

    opened = await client.post("/mock/gates/g1")

    assert opened.json() == {"gate": "g1", "open": True, "released": 1}
    response = await answer
    assert response.json()["status"] == "COMPLETED"
    assert await gate_state(client, "g1") == {"open": True, "waiting": 0}
    assert (await components(client))[CID]["provisioned"] is True


async def test_an_open_gate_lets_later_calls_through(client: httpx.AsyncClient) -> None:
    """A gate stays open: a call that reaches it afterwards is answered at once."""
    await client.post("/mock/gates/g2")

    response = await provision(client, request_for(gate="g2"))

    assert response.json()["status"] == "COMPLETED"


async def test_a_gate_keeps_an_async_token_running_until_it_is_opened(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Polls and latency passing are not enough: the token reports RUNNING until the gate opens."""
    token = (await provision(client, request_for(mode="async", polls=0, gate="g3"))).json()
    clock.advance(86_400)
    assert [await poll_status(client, token) for _ in range(3)] == ["RUNNING"] * 3
    assert (await components(client))[CID]["provisioned"] is False

    await client.post("/mock/gates/g3")

    assert await poll_status(client, token) == "COMPLETED"


# --- failures --------------------------------------------------------------------------------


async def test_fail_by_status_answers_failed_with_error_log(client: httpx.AsyncClient) -> None:
    """A failing sync provision answers 200 FAILED with an ERROR log and deploys nothing."""
    response = await provision(client, request_for(fail="provision"))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "FAILED"
    assert [log["level"] for log in body["logs"]] == ["ERROR"]
    assert (await components(client))[CID]["provisioned"] is False


async def test_fail_by_status_in_async_mode_fails_the_final_poll(
    client: httpx.AsyncClient,
) -> None:
    """A failing async provision reports FAILED as its final status."""
    token = (await provision(client, request_for(mode="async", fail="both"))).json()

    assert [await poll_status(client, token) for _ in range(2)] == ["RUNNING", "FAILED"]


async def test_fail_with_400_answers_request_validation_error(client: httpx.AsyncClient) -> None:
    """failHow 400 answers a RequestValidationError."""
    response = await provision(client, request_for(fail="provision", failHow=400))

    assert_request_validation_error(response, "failed")


async def test_fail_with_500_answers_system_error(client: httpx.AsyncClient) -> None:
    """failHow 500 answers a SystemError."""
    response = await provision(client, request_for(fail="provision", failHow="500"))

    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "userMessage", "moreInfo"}
    assert body["moreInfo"]["problems"]


async def test_fail_with_http_error_in_async_mode_answers_the_final_poll(
    client: httpx.AsyncClient,
) -> None:
    """In async mode an HTTP failure is the answer to the final poll; the POST still gets 202."""
    response = await provision(client, request_for(mode="async", fail="provision", failHow=500))
    assert response.status_code == 202

    statuses = [(await poll(client, response.json())).status_code for _ in range(2)]

    assert statuses == [200, 500]


@pytest.mark.parametrize(
    ("fail", "action", "expected"),
    [
        ("provision", "provision", "FAILED"),
        ("provision", "unprovision", "COMPLETED"),
        ("unprovision", "provision", "COMPLETED"),
        ("unprovision", "unprovision", "FAILED"),
        ("both", "unprovision", "FAILED"),
    ],
)
async def test_fail_applies_to_the_named_actions_only(
    client: httpx.AsyncClient, fail: str, action: str, expected: str
) -> None:
    """`fail` makes exactly the actions it names fail."""
    response = await provision(client, request_for(fail=fail), action)

    assert response.json()["status"] == expected


async def test_transient_errors_answer_503_then_behave_normally(
    client: httpx.AsyncClient,
) -> None:
    """The first transientErrors POSTs answer 503 and deploy nothing; then the POST succeeds."""
    body = request_for(transientErrors=2)

    statuses = [(await provision(client, body)).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert (await components(client))[CID]["provisionCount"] == 1


async def test_transient_errors_are_counted_per_action(client: httpx.AsyncClient) -> None:
    """Each action has its own count of transient errors."""
    body = request_for(transientErrors=1)
    await provision(client, body)
    await provision(client, body)

    response = await provision(client, body, "unprovision")

    assert response.status_code == 503
    assert set(response.json()) == {"error", "userMessage", "moreInfo"}


async def test_garbage_answers_200_with_a_body_that_is_not_json(
    client: httpx.AsyncClient,
) -> None:
    """With garbage the answer is a 200 text/html body that is not JSON; nothing is deployed."""
    response = await provision(client, request_for(garbage=True))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert (await components(client))[CID]["provisioned"] is False


async def test_public_info_json_is_sent_verbatim_beside_the_private_info(
    client: httpx.AsyncClient,
) -> None:
    """publicInfoJson is the COMPLETED answer's publicInfo as raw text, numbers no serializer
    writes and escapes included; privateInfo and the rest of the answer stay."""
    raw = '{"size": 1e400, "name": "a\\u0000b"}'
    response = await provision(client, request_for(publicInfoJson=raw))

    assert response.status_code == 200
    assert response.content.endswith(b',"publicInfo":' + raw.encode() + b"}}")
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["info"]["publicInfo"] == {"size": float("inf"), "name": "a\x00b"}
    assert body["info"]["privateInfo"] == {"mockSecret": f"secret-{CID}"}
    assert (await components(client))[CID]["provisioned"] is True


# --- bad requests ----------------------------------------------------------------------------


async def test_body_that_is_not_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    """A body that is not JSON answers 400 with a RequestValidationError body."""
    response = await client.post("/v1/provision", content=b"descriptor: nope")

    assert_request_validation_error(response, "not valid JSON")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"descriptorKind": None}, "descriptorKind: is required"),
        ({"descriptorKind": "SOMETHING"}, "descriptorKind: must be one of"),
        ({"descriptorKind": "DATAPRODUCT_DESCRIPTOR_WITH_RESULTS"}, "descriptorKind"),
        ({"descriptor": 42}, "descriptor: is required"),
        ({"descriptor": "- a\n- b\n"}, "must be a YAML mapping"),
        ({"descriptor": "dataProduct: [unclosed\n"}, "not valid YAML"),
        ({"descriptor": "dataProduct: {}\ncomponentIdToProvision: x\n"}, "no component"),
        ({"removeData": "yes"}, "removeData"),
    ],
)
async def test_malformed_provisioning_request_is_a_bad_request(
    client: httpx.AsyncClient, change: dict[str, Any], problem: str
) -> None:
    """A malformed ProvisioningRequest answers 400 naming the problem, and deploys nothing."""
    body = {**request_for(), **change}
    body = {key: value for key, value in body.items() if value is not None}

    assert_request_validation_error(await provision(client, body), problem)
    assert await components(client) == {}


@pytest.mark.parametrize(
    ("mock", "problem"),
    [
        ({"latencyMs": "fast"}, "specific.mock.latencyMs"),
        ({"latencyMs": -5}, "specific.mock.latencyMs"),
        ({"latencyMs": 10**400}, "specific.mock.latencyMs"),
        ({"latencyMs": float("nan")}, "specific.mock.latencyMs"),
        ({"mode": "sometimes"}, "specific.mock.mode"),
        ({"polls": -1}, "specific.mock.polls"),
        ({"polls": True}, "specific.mock.polls"),
        ({"tokenFormat": "xml"}, "specific.mock.tokenFormat"),
        ({"fail": "always"}, "specific.mock.fail"),
        ({"fail": "both", "failHow": 404}, "specific.mock.failHow"),
        ({"transientErrors": 1.5}, "specific.mock.transientErrors"),
        ({"neverFinish": "yes"}, "specific.mock.neverFinish"),
        ({"neverFinish": True, "mode": "sync"}, "needs mode async"),
        ({"garbage": 1}, "specific.mock.garbage"),
        ({"invalid": ["why", 3]}, "specific.mock.invalid"),
        ({"invalid": {"why": "not"}}, "specific.mock.invalid"),
        ({"publicInfo": "shown"}, "specific.mock.publicInfo: must be a mapping"),
        ({"privateInfo": ["secret"]}, "specific.mock.privateInfo: must be a mapping"),
        ({"validationLatencyMs": -1}, "specific.mock.validationLatencyMs"),
        ({"validationFail": 404}, "specific.mock.validationFail"),
        ({"validationPolls": "two"}, "specific.mock.validationPolls"),
        ({"validationStatus": "DONE"}, "specific.mock.validationStatus"),
        ({"aclFail": "yes"}, "specific.mock.aclFail"),
        ({"aclMode": "later"}, "specific.mock.aclMode"),
        ({"publicInfoJson": {"a": 1}}, "specific.mock.publicInfoJson"),
        ({"latencyMS": 5}, "specific.mock.latencyMS: unknown knob"),
        ({"gate": ""}, "specific.mock.gate"),
        ({"gate": "a/b"}, "specific.mock.gate"),
        ({"gate": 7}, "specific.mock.gate"),
    ],
)
async def test_nonsense_mock_knobs_are_a_bad_request(
    client: httpx.AsyncClient, mock: dict[str, Any], problem: str
) -> None:
    """A `specific.mock` knob of the wrong type or value answers 400 naming it."""
    assert_request_validation_error(await provision(client, request_for(**mock)), problem)


async def test_every_nonsense_knob_is_reported(client: httpx.AsyncClient) -> None:
    """All the problems of a `specific.mock` are reported at once."""
    response = await provision(client, request_for(mode="never", polls="many"))

    assert len(response.json()["errors"]) == 2


async def test_mock_section_that_is_not_a_mapping_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    """`specific.mock` must be a mapping."""
    dp = data_product({**component(), "specific": {"mock": "fast please"}})
    body = {"descriptorKind": "COMPONENT_DESCRIPTOR", "descriptor": component_descriptor(dp)}

    assert_request_validation_error(await provision(client, body), "specific.mock: must be")


# --- validate --------------------------------------------------------------------------------


async def test_validate_v1_answers_valid(client: httpx.AsyncClient) -> None:
    """/v1/validate answers valid=true for a component that is not marked invalid."""
    response = await client.post("/v1/validate", json=request_for())

    assert response.status_code == 200
    assert response.json() == {"valid": True}


async def test_validate_v1_answers_invalid_with_the_reason(client: httpx.AsyncClient) -> None:
    """/v1/validate answers valid=false with the reason given in `invalid`."""
    response = await client.post("/v1/validate", json=request_for(invalid="no owner"))

    assert response.json() == {"valid": False, "error": {"errors": ["no owner"]}}


async def test_validate_v1_finds_an_unreadable_descriptor_invalid(
    client: httpx.AsyncClient,
) -> None:
    """A descriptor whose component is missing is invalid, not a bad request."""
    body = {**request_for(), "descriptor": "dataProduct: {}\ncomponentIdToProvision: x\n"}

    response = await client.post("/v1/validate", json=body)

    assert response.status_code == 200
    assert response.json()["valid"] is False


async def test_validate_v2_with_a_provisioning_request(client: httpx.AsyncClient) -> None:
    """/v2/validate answers 202 with a token whose status holds the validation result."""
    response = await client.post("/v2/validate", json=request_for(invalid="no owner"))
    assert response.status_code == 202

    status = await client.get(f"/v2/validate/{response.json()}/status")

    assert status.json() == {
        "status": "COMPLETED",
        "info": {"publicInfo": {"valid": False, "error": {"errors": ["no owner"]}}},
    }


async def test_validate_v2_with_a_2_1_0_validation_request(client: httpx.AsyncClient) -> None:
    """/v2/validate accepts the 2.1.0 body `{descriptor}` without a descriptorKind."""
    body = {"descriptor": request_for()["descriptor"]}

    token = (await client.post("/v2/validate", json=body)).json()
    status = await client.get(f"/v2/validate/{token}/status")

    assert status.json()["info"]["publicInfo"] == {"valid": True}
    assert (await calls(client, "validate"))["calls"][0]["componentId"] == CID


async def test_validate_v2_unknown_token_is_not_found(client: httpx.AsyncClient) -> None:
    """Polling an unknown validation token answers 404."""
    response = await client.get(f"/v2/validate/{'0' * TOKEN_LENGTH}/status")

    assert_request_validation_error(response, "unknown", 404)


async def test_validate_answers_every_reason_of_an_invalid_list(
    client: httpx.AsyncClient,
) -> None:
    """`invalid` may list several reasons; both validate endpoints report them all."""
    body = request_for(invalid=["no owner", "no schema"])

    v1 = await client.post("/v1/validate", json=body)
    token = (await client.post("/v2/validate", json=body)).json()
    v2 = await client.get(f"/v2/validate/{token}/status")

    expected = {"valid": False, "error": {"errors": ["no owner", "no schema"]}}
    assert v1.json() == expected
    assert v2.json()["info"]["publicInfo"] == expected


async def test_validate_v1_takes_its_validation_latency(client: httpx.AsyncClient) -> None:
    """/v1/validate answers only after validationLatencyMs; latencyMs is for provisions."""
    await client.post("/v1/validate", json=request_for(validationLatencyMs=30))
    await client.post("/v1/validate", json=request_for(OTHER_ID, latencyMs=60_000))

    slow, fast = (await calls(client, "validate"))["calls"]
    assert slow["answeredAt"] - slow["receivedAt"] >= 0.025
    assert fast["answeredAt"] - fast["receivedAt"] < 30


@pytest.mark.parametrize("path", ["/v1/validate", "/v2/validate"])
async def test_validation_fail_makes_the_validate_call_error(
    client: httpx.AsyncClient, path: str
) -> None:
    """validationFail 400 or 500 makes the validate POST itself answer that error."""
    rejected = await client.post(path, json=request_for(validationFail=400))
    broken = await client.post(path, json=request_for(validationFail="500"))

    assert_request_validation_error(rejected, "validationFail")
    assert broken.status_code == 500
    assert set(broken.json()) == {"error", "userMessage", "moreInfo"}


async def test_validate_v2_is_running_for_validation_polls(client: httpx.AsyncClient) -> None:
    """validationPolls makes /v2/validate's status RUNNING that many times before the result."""
    token = (await client.post("/v2/validate", json=request_for(validationPolls=2))).json()

    answers = [(await client.get(f"/v2/validate/{token}/status")).json() for _ in range(3)]

    assert answers[:2] == [{"status": "RUNNING"}] * 2
    assert answers[2] == {"status": "COMPLETED", "info": {"publicInfo": {"valid": True}}}


async def test_validate_v2_is_running_until_validation_latency_passed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With validationLatencyMs, /v2/validate's status stays RUNNING until that time passed."""
    token = (await client.post("/v2/validate", json=request_for(validationLatencyMs=2_000))).json()
    status_path = f"/v2/validate/{token}/status"
    assert (await client.get(status_path)).json()["status"] == "RUNNING"

    clock.advance(2.0)

    assert (await client.get(status_path)).json()["status"] == "COMPLETED"


async def test_validate_v2_failed_status(client: httpx.AsyncClient) -> None:
    """validationStatus FAILED makes the final /v2/validate status FAILED, without a result."""
    token = (await client.post("/v2/validate", json=request_for(validationStatus="FAILED"))).json()

    status = await client.get(f"/v2/validate/{token}/status")

    assert status.status_code == 200
    assert status.json() == {"status": "FAILED"}


async def test_validate_calls_are_counted_per_component(client: httpx.AsyncClient) -> None:
    """Each validate POST counts for its component, in /mock/components and the call log;
    /v2 status polls are logged as validate-status, apart from provision status polls."""
    await client.post("/v1/validate", json=request_for())
    token = (await client.post("/v2/validate", json=request_for())).json()
    await client.get(f"/v2/validate/{token}/status")
    await client.post("/v1/validate", json=request_for(OTHER_ID))

    record = (await components(client))[CID]
    assert (record["validateCount"], record["provisionCount"]) == (2, 0)
    response = await client.get("/mock/calls", params={"componentId": CID})
    assert [c["action"] for c in response.json()["calls"]] == [
        "validate",
        "validate",
        "validate-status",
    ]
    assert (await calls(client, "status"))["calls"] == []
    assert (await calls(client, "provision"))["calls"] == []


# --- Witboost's request collection -----------------------------------------------------------

# Shaped like the provision sample of Witboost's Tech Adapter request collection: a
# DATAPRODUCT_DESCRIPTOR whose YAML is a COMPONENT_DESCRIPTOR body, written by hand (two-space
# indents, `dependsOn: [ ]`, no final line end), and no `specific.mock`.
WITBOOST_COMPONENT = "urn:dmb:cmp:finance:ledger:1:s3-landing"
WITBOOST_DESCRIPTOR = (
    "dataProduct:\n"
    "  name: Ledger\n"
    "  environment: dev\n"
    "  dataProductOwner: group:finance\n"
    "  domain: finance\n"
    "  kind: dataproduct\n"
    "  version: 1.0.0\n"
    "  billing: {}\n"
    "  tags: []\n"
    "  id: urn:dmb:dp:finance:ledger:1\n"
    "  specific: {}\n"
    "  components:\n"
    f"    - id: {WITBOOST_COMPONENT}\n"
    "      name: Ledger S3 landing\n"
    "      kind: storage\n"
    "      owners:\n"
    "        - group:finance\n"
    "      infrastructureTemplateId: urn:dmb:itm:aws-s3:1.0.0\n"
    "      dependsOn: [ ]\n"
    "      tags: [ ]\n"
    "      specific:\n"
    "        bucket: ledger-landing\n"
    "        tables:\n"
    "          - tableName: entries\n"
    "            schema:\n"
    "            - name: id\n"
    "              dataType: TEXT\n"
    f"componentIdToProvision: {WITBOOST_COMPONENT}"
)


def witboost_sample(descriptor: str = WITBOOST_DESCRIPTOR) -> dict[str, Any]:
    """A body shaped like the collection's provision, unprovision and validate samples."""
    return {
        "descriptor": descriptor,
        "descriptorKind": "DATAPRODUCT_DESCRIPTOR",
        "removeData": False,
    }


async def test_witboost_collection_samples_are_served(client: httpx.AsyncClient) -> None:
    """The collection's provision, unprovision and updateacl samples (a DATAPRODUCT_DESCRIPTOR
    that is component-shaped; updateacl with the descriptor and an empty result) are served as
    that component; its validate sample ("Hi") is answered invalid, not refused."""
    provisioned = await provision(client, witboost_sample())
    assert provisioned.status_code == 200, provisioned.text
    assert provisioned.json()["status"] == "COMPLETED"
    assert (await components(client))[WITBOOST_COMPONENT]["provisioned"] is True

    acl = {
        "refs": ["jane.doe_example.com"],
        "provisionInfo": {"request": WITBOOST_DESCRIPTOR, "result": ""},
    }
    granted = await client.post("/v1/updateacl", json=acl)
    assert granted.json()["status"] == "COMPLETED"

    unprovisioned = await provision(client, witboost_sample(), "unprovision")
    assert unprovisioned.json()["status"] == "COMPLETED"
    record = (await components(client))[WITBOOST_COMPONENT]
    assert (record["provisioned"], record["aclRefs"], record["aclResult"]) == (
        False,
        ["jane.doe_example.com"],
        "",
    )
    assert (await client.post("/v1/validate", json=witboost_sample("Hi"))).json()["valid"] is False
    token = (await client.post("/v2/validate", json=witboost_sample("Hi"))).json()
    status = (await client.get(f"/v2/validate/{token}/status")).json()
    assert status["info"]["publicInfo"]["valid"] is False
    logged = (await calls(client, "provision"))["calls"]
    assert [(c["componentId"], c["descriptorKind"]) for c in logged] == [
        (WITBOOST_COMPONENT, "DATAPRODUCT_DESCRIPTOR")
    ]


async def test_component_shaped_dataproduct_descriptor_steers_by_the_component(
    client: httpx.AsyncClient,
) -> None:
    """A component-shaped DATAPRODUCT_DESCRIPTOR takes the component's knobs, not the DP's."""
    body = {**request_for(mode="async", polls=0), "descriptorKind": "DATAPRODUCT_DESCRIPTOR"}

    response = await provision(client, body)

    assert response.status_code == 202
    assert await poll_status(client, response.json()) == "COMPLETED"
    assert set(await components(client)) == {CID}


# --- updateacl and reverse provisioning ------------------------------------------------------


def acl_body(
    refs: list[str],
    *,
    descriptor: str | None = None,
    result: str = '{"status":"COMPLETED"}',
) -> dict[str, Any]:
    """An UpdateAclRequest as real adapters read it: provisionInfo.request is the descriptor."""
    if descriptor is None:
        descriptor = request_for()["descriptor"]
    return {"refs": refs, "provisionInfo": {"request": descriptor, "result": result}}


async def test_updateacl_records_the_refs_and_parsed_result_of_the_component(
    client: httpx.AsyncClient,
) -> None:
    """updateacl reads provisionInfo.request as the COMPONENT_DESCRIPTOR YAML and the result as
    the JSON ProvisioningStatus, answers COMPLETED and records both for the component."""
    refs = ["user:alice", "group:dev"]
    last_status = {
        "status": "COMPLETED",
        "info": {"publicInfo": {"table": "sales"}, "privateInfo": {"password": "p"}},
    }

    response = await client.post(
        "/v1/updateacl", json=acl_body(refs, result=json.dumps(last_status))
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["info"]["publicInfo"]["grantedRefs"]["value"] == "user:alice, group:dev"
    record = (await components(client))[CID]
    assert record["aclRefs"] == refs
    assert record["aclResult"] == last_status
    [call] = (await calls(client, "updateacl"))["calls"]
    assert (call["componentId"], call["descriptorKind"]) == (CID, "COMPONENT_DESCRIPTOR")


async def test_updateacl_keeps_a_result_that_is_not_json_as_text(
    client: httpx.AsyncClient,
) -> None:
    """A result that is not JSON (Witboost's samples send "") is recorded as the text sent."""
    await client.post("/v1/updateacl", json=acl_body(["user:bob"], result="provisioned"))

    assert (await components(client))[CID]["aclResult"] == "provisioned"


async def test_updateacl_refuses_a_json_provisioning_request_as_request(
    client: httpx.AsyncClient,
) -> None:
    """The old shape, the JSON ProvisioningRequest instead of its descriptor, answers 400
    saying so, as a real adapter fails on it; nothing is recorded."""
    body = acl_body(["user:bob"], descriptor=json.dumps(request_for()))

    response = await client.post("/v1/updateacl", json=body)

    assert_request_validation_error(response, "provisionInfo.request: is a ProvisioningRequest")
    assert "COMPONENT_DESCRIPTOR YAML itself" in response.json()["errors"][0]
    assert await components(client) == {}


@pytest.mark.parametrize(
    ("descriptor", "problem"),
    [
        ("not yaml: [", "provisionInfo.request: descriptor: not valid YAML"),
        ("just text", "provisionInfo.request: descriptor: must be a YAML mapping"),
        ("componentIdToProvision: x\n", "provisionInfo.request: dataProduct: is required"),
        (f"dataProduct: {{}}\ncomponentIdToProvision: {CID}\n", "no component with id"),
    ],
)
async def test_updateacl_refuses_a_request_that_is_not_a_component_descriptor(
    client: httpx.AsyncClient, descriptor: str, problem: str
) -> None:
    """provisionInfo.request must be YAML with a dataProduct holding the component."""
    response = await client.post("/v1/updateacl", json=acl_body(["u"], descriptor=descriptor))

    assert_request_validation_error(response, problem)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"refs": ["user:bob"]}, "provisionInfo: is required"),
        ({"provisionInfo": {"request": "", "result": ""}}, "refs: is required"),
        ({"refs": "bob", "provisionInfo": {"request": "", "result": ""}}, "refs: is required"),
        ({"refs": [], "provisionInfo": {"result": ""}}, "provisionInfo.request: is required"),
        ({"refs": [], "provisionInfo": {"request": "", "result": {}}}, "provisionInfo.result"),
    ],
)
async def test_updateacl_without_refs_or_provision_info_is_a_bad_request(
    client: httpx.AsyncClient, body: dict[str, Any], problem: str
) -> None:
    """updateacl needs a list of refs and a provisionInfo {request, result} of strings."""
    assert_request_validation_error(await client.post("/v1/updateacl", json=body), problem)


async def test_updateacl_fails_when_the_component_asks(client: httpx.AsyncClient) -> None:
    """With aclFail the answer is 200 FAILED with an ERROR log; the refs sent are recorded."""
    body = acl_body(["user:eve"], descriptor=request_for(aclFail=True)["descriptor"])

    response = await client.post("/v1/updateacl", json=body)

    assert response.status_code == 200
    assert response.json()["status"] == "FAILED"
    assert [log["level"] for log in response.json()["logs"]] == ["ERROR"]
    assert (await components(client))[CID]["aclRefs"] == ["user:eve"]


async def test_async_updateacl_is_polled_at_the_provision_status_path(
    client: httpx.AsyncClient,
) -> None:
    """With aclMode async, updateacl answers 202 + token, polled at /v1/provision/{token}/status
    (the spec's only provisioning status), RUNNING `polls` times, then the final answer."""
    descriptor = request_for(aclMode="async", polls=2)["descriptor"]

    response = await client.post("/v1/updateacl", json=acl_body(["user:al"], descriptor=descriptor))

    assert response.status_code == 202
    token = response.json()
    assert [await poll_status(client, token) for _ in range(4)] == [
        "RUNNING",
        "RUNNING",
        "COMPLETED",
        "COMPLETED",
    ]
    statuses = (await calls(client, "status"))["calls"]
    assert {(c["componentId"], c["token"]) for c in statuses} == {(CID, token)}


async def test_async_updateacl_failure_is_the_final_status(client: httpx.AsyncClient) -> None:
    """aclMode async with aclFail reports FAILED as the final status."""
    descriptor = request_for(aclMode="async", polls=0, aclFail=True)["descriptor"]

    token = (await client.post("/v1/updateacl", json=acl_body([], descriptor=descriptor))).json()

    assert await poll_status(client, token) == "FAILED"


async def test_forget_tokens_forgets_updateacl_tokens(client: httpx.AsyncClient) -> None:
    """An async updateacl token is forgotten like any other."""
    descriptor = request_for(aclMode="async")["descriptor"]
    token = (await client.post("/v1/updateacl", json=acl_body([], descriptor=descriptor))).json()

    assert (await client.post("/mock/forget-tokens")).json() == {"forgotten": 1}
    assert_request_validation_error(await poll(client, token), "unknown", 404)


async def test_reverse_provisioning_echoes_params_as_updates(client: httpx.AsyncClient) -> None:
    """Reverse provisioning answers COMPLETED with the params under spec.mesh.specific."""
    body = {
        "useCaseTemplateId": "urn:dmb:utm:op-standard:0.0.0",
        "environment": "development",
        "params": {"database": "sales", "retries": 2},
    }

    response = await client.post("/v1/reverse-provisioning", json=body)

    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETED"
    assert response.json()["updates"] == {
        "spec.mesh.specific.database": "sales",
        "spec.mesh.specific.retries": 2,
    }


@pytest.mark.parametrize(
    "body", [{"environment": "development"}, {"useCaseTemplateId": "urn:dmb:utm:op:0"}]
)
async def test_reverse_provisioning_without_required_fields_is_a_bad_request(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """Reverse provisioning needs useCaseTemplateId and environment."""
    response = await client.post("/v1/reverse-provisioning", json=body)

    assert_request_validation_error(response, "is required")


async def test_reverse_provisioning_status_of_unknown_token_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    """The reverse-provisioning status of a token never handed out answers 404."""
    response = await client.get("/v1/reverse-provisioning/abc/status")

    assert_request_validation_error(response, "unknown", 404)


# --- what dependencies carried, and the info answered ----------------------------------------

STORAGE_INFO = {
    "publicInfo": {"bucket": {"type": "string", "label": "Bucket", "value": "landing"}},
    "privateInfo": {"accessKey": "storage-key"},
}


def port_request(**mock: Any) -> dict[str, Any]:
    """A provision of the output port OTHER_ID, which depends on the storage CID (with info)
    and on a component the descriptor does not list."""
    storage = {**component(CID), "info": STORAGE_INFO}
    port = {**component(OTHER_ID, **mock), "dependsOn": [CID, "urn:dmb:cmp:elsewhere:0:x"]}
    descriptor = component_descriptor(data_product(storage, port), OTHER_ID)
    return {"descriptorKind": "COMPONENT_DESCRIPTOR", "descriptor": descriptor}


async def test_requests_record_the_info_each_dependency_carried(
    client: httpx.AsyncClient,
) -> None:
    """Each provision request records, per id in the target's dependsOn, the `info` that
    dependency carried in dataProduct.components (null when it carried none or is not listed)."""
    await provision(client, port_request())

    response = await client.get("/mock/requests", params={"componentId": OTHER_ID})

    [entry] = response.json()["requests"]
    assert entry["dependencyInfo"] == {CID: STORAGE_INFO, "urn:dmb:cmp:elsewhere:0:x": None}
    assert entry["seq"] == (await calls(client, "provision"))["calls"][0]["seq"]


async def test_each_component_keeps_what_it_received(client: httpx.AsyncClient) -> None:
    """GET /mock/components/{id}/received lists the component's provision and unprovision
    requests with what their dependencies carried; a component without dependencies gets {}."""
    await provision(client, port_request())
    await provision(client, port_request(), "unprovision")
    await provision(client, request_for())

    port = (await client.get(f"/mock/components/{OTHER_ID}/received")).json()
    storage = (await client.get(f"/mock/components/{CID}/received")).json()

    assert port["componentId"] == OTHER_ID
    assert [(r["action"], r["dependencyInfo"][CID]) for r in port["received"]] == [
        ("provision", STORAGE_INFO),
        ("unprovision", STORAGE_INFO),
    ]
    assert [r["dependencyInfo"] for r in storage["received"]] == [{}]


async def test_received_of_an_unknown_component_is_not_found(client: httpx.AsyncClient) -> None:
    """Asking what a component the mock never heard of received answers 404."""
    response = await client.get("/mock/components/urn:dmb:cmp:nobody:0:x/received")

    assert response.status_code == 404
    assert "never received" in response.json()["errors"][0]


async def test_provision_answer_carries_the_component_s_public_and_private_info(
    client: httpx.AsyncClient,
) -> None:
    """specific.mock.publicInfo/privateInfo are merged over the mock's own info of a COMPLETED
    provision (sync and async alike); an unprovision answer keeps the mock's own."""
    knobs: dict[str, Any] = {
        "publicInfo": {"table": "sales"},
        "privateInfo": {"password": "hunter2"},
    }

    sync = (await provision(client, request_for(**knobs))).json()
    token = (await provision(client, request_for(OTHER_ID, mode="async", polls=0, **knobs))).json()
    later = (await poll(client, token)).json()
    removed = (await provision(client, request_for(**knobs), "unprovision")).json()

    for answer, component_id in ((sync, CID), (later, OTHER_ID)):
        assert answer["info"]["publicInfo"]["table"] == "sales"
        assert answer["info"]["publicInfo"]["componentId"]["value"] == component_id
        assert answer["info"]["privateInfo"] == {
            "mockSecret": f"secret-{component_id}",
            "password": "hunter2",
        }
    assert "table" not in removed["info"]["publicInfo"]
    assert removed["info"]["privateInfo"] == {"mockSecret": f"secret-{CID}"}


async def test_info_that_json_cannot_write_as_is_is_sent_as_text(
    client: httpx.AsyncClient,
) -> None:
    """A YAML date, as a value or a key, in publicInfo is answered as a string, not a 500."""
    since = datetime.date(2024, 1, 31)

    response = await provision(client, request_for(publicInfo={"since": since, since: "key"}))

    assert response.status_code == 200
    public_info = response.json()["info"]["publicInfo"]
    assert (public_info["since"], public_info["2024-01-31"]) == ("2024-01-31", "key")


# --- the Market Plane receiver ---------------------------------------------------------------

SECRET = "s3cret"
EVENT = {"type": "release.deployed", "deploymentUnitId": DP_ID, "environment": "development"}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers of a delivery signed as provisioner signs it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "X-Provisioner-Signature": f"sha256={digest}"}


@pytest.fixture
async def market() -> AsyncIterator[httpx.AsyncClient]:
    """A mock whose Market Plane checks signatures with SECRET."""
    async with mock_client(create_mock_app(marketplace_secret=SECRET)) as client:
        yield client


async def test_marketplace_records_signed_events_with_their_headers(
    market: httpx.AsyncClient,
) -> None:
    """A correctly signed delivery is accepted (2xx) and recorded with its body and headers."""
    body = json.dumps(EVENT).encode()

    response = await market.post("/mock/marketplace/events", content=body, headers=signed(body))

    assert response.status_code == 202
    [event] = (await market.get("/mock/marketplace/events")).json()["events"]
    assert event["body"] == EVENT
    assert event["signature"] == "valid"
    assert event["headers"]["x-provisioner-signature"] == signed(body)["X-Provisioner-Signature"]


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        (signed(b"another body"), "wrong"),
        (signed(json.dumps(EVENT).encode(), "other secret"), "wrong"),
        ({"X-Provisioner-Signature": "md5=abc"}, "malformed"),
        ({b"X-Provisioner-Signature": "sha256=\u00e9t\u00e9".encode("latin-1")}, "wrong"),
        ({}, "missing"),
    ],
    ids=["other-body", "other-secret", "malformed", "not-ascii", "missing"],
)
async def test_marketplace_refuses_a_bad_signature(
    market: httpx.AsyncClient, headers: dict[str, str] | dict[bytes, bytes], verdict: str
) -> None:
    """With a secret, a missing, malformed or wrong signature answers 401 and is only
    recorded as rejected."""
    response = await market.post(
        "/mock/marketplace/events", content=json.dumps(EVENT).encode(), headers=headers
    )

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    seen = (await market.get("/mock/marketplace/events")).json()
    assert seen["events"] == []
    assert [(r["httpStatus"], r["signature"]) for r in seen["rejected"]] == [(401, verdict)]


async def test_marketplace_without_a_secret_records_unchecked_events(
    client: httpx.AsyncClient,
) -> None:
    """Without a secret any JSON delivery is accepted, its signature left unchecked."""
    response = await client.post("/mock/marketplace/events", json=EVENT)

    assert response.status_code == 202
    [event] = (await client.get("/mock/marketplace/events")).json()["events"]
    assert (event["body"], event["signature"]) == (EVENT, "unchecked")


async def test_marketplace_refuses_a_body_that_is_not_json(market: httpx.AsyncClient) -> None:
    """A signed delivery whose body is not JSON answers 400."""
    body = b"<event/>"

    response = await market.post("/mock/marketplace/events", content=body, headers=signed(body))

    assert response.status_code == 400


async def test_marketplace_fails_the_next_deliveries_when_asked(
    market: httpx.AsyncClient,
) -> None:
    """After fail {count: 2, status: 503} the next two deliveries answer 503 and are not
    recorded as events; the third is accepted."""
    body = json.dumps(EVENT).encode()
    armed = await market.post("/mock/marketplace/fail", json={"count": 2, "status": 503})
    assert armed.json() == {"count": 2, "status": 503}

    statuses = [
        (
            await market.post("/mock/marketplace/events", content=body, headers=signed(body))
        ).status_code
        for _ in range(3)
    ]

    assert statuses == [503, 503, 202]
    seen = (await market.get("/mock/marketplace/events")).json()
    assert [e["body"] for e in seen["events"]] == [EVENT]
    assert [r["httpStatus"] for r in seen["rejected"]] == [503, 503]
    assert seen["failuresLeft"] == 0


@pytest.mark.parametrize(
    "body", [{}, {"count": -1}, {"count": 1, "status": 200}, {"count": True}, [1]]
)
async def test_marketplace_fail_with_nonsense_is_a_bad_request(
    market: httpx.AsyncClient, body: object
) -> None:
    """The failure control needs a count >= 0 and an error status from 400 to 599."""
    response = await market.post("/mock/marketplace/fail", json=body)

    assert response.status_code == 400
    assert response.json()["errors"]


async def test_clearing_marketplace_events(market: httpx.AsyncClient) -> None:
    """DELETE /mock/marketplace/events forgets accepted and rejected deliveries."""
    body = json.dumps(EVENT).encode()
    await market.post("/mock/marketplace/events", content=body, headers=signed(body))
    await market.post("/mock/marketplace/events", content=body, headers=signed(b"{}"))
    before = (await market.get("/mock/marketplace/events")).json()
    assert (len(before["events"]), len(before["rejected"])) == (1, 1)

    assert (await market.delete("/mock/marketplace/events")).status_code == 204

    seen = (await market.get("/mock/marketplace/events")).json()
    assert (seen["events"], seen["rejected"]) == ([], [])


# --- control API -----------------------------------------------------------------------------


async def test_health_answers_200(client: httpx.AsyncClient) -> None:
    """The health check answers 200."""
    assert (await client.get("/mock/health")).status_code == 200


async def test_calls_log_records_each_call(client: httpx.AsyncClient) -> None:
    """Each call is logged in order with what it was about and how it was answered."""
    token = (await provision(client, request_for(mode="async", polls=0))).json()
    await poll(client, token)

    logged = (await calls(client))["calls"]

    assert [(c["seq"], c["action"], c["httpStatus"]) for c in logged] == [
        (1, "provision", 202),
        (2, "status", 200),
    ]
    assert all(c["componentId"] == CID and c["token"] == token for c in logged)
    assert all(c["descriptorKind"] == "COMPONENT_DESCRIPTOR" for c in logged)
    assert all(c["receivedAt"] <= c["answeredAt"] for c in logged)


async def test_calls_log_filters_by_action(client: httpx.AsyncClient) -> None:
    """`?action=` shows only the calls of that action."""
    await provision(client, request_for())
    await client.post("/v1/validate", json=request_for())

    logged = (await calls(client, "validate"))["calls"]

    assert [c["action"] for c in logged] == ["validate"]


async def test_clearing_calls_keeps_component_state(client: httpx.AsyncClient) -> None:
    """DELETE /mock/calls empties the log and resets maxInFlight; components are kept."""
    await provision(client, request_for())

    assert (await client.delete("/mock/calls")).status_code == 204

    assert await calls(client) == {"calls": [], "maxInFlight": 0}
    assert (await components(client))[CID]["provisioned"] is True


async def test_max_in_flight_counts_concurrent_sync_operations(
    client: httpx.AsyncClient,
) -> None:
    """Concurrent sync operations are in flight together between receipt and answer."""
    ids = [f"{CID}-{n}" for n in range(6)]
    sent = asyncio.gather(*(provision(client, request_for(cid, gate="six")) for cid in ids))

    async def all_held() -> bool:
        return bool((await client.get("/mock/gates")).json().get("six", {}).get("waiting") == 6)

    await wait_until(all_held)
    await client.post("/mock/gates/six")
    responses = await sent

    assert [r.status_code for r in responses] == [200] * 6
    assert (await calls(client))["maxInFlight"] == 6


async def test_max_in_flight_counts_async_operations_until_final_answer(
    client: httpx.AsyncClient,
) -> None:
    """Async operations are in flight from their POST until their final status answer."""
    ids = [f"{CID}-{n}" for n in range(5)]
    responses = await asyncio.gather(
        *(provision(client, request_for(cid, mode="async", polls=0)) for cid in ids)
    )
    for response in responses:
        assert await poll_status(client, response.json()) == "COMPLETED"

    await provision(client, request_for(mode="async"))

    assert (await calls(client))["maxInFlight"] == 5


# --- descriptor parsing ----------------------------------------------------------------------

_LAST_LINES = [
    f"componentIdToProvision: {OTHER_ID}\n",
    f"componentIdToProvision: '{OTHER_ID}'\n",
    f'componentIdToProvision: "{OTHER_ID}"',
    f"componentIdToProvision:   {OTHER_ID}   # the output port\n\n",
]


@pytest.mark.parametrize("last_line", _LAST_LINES)
def test_fast_path_equals_full_parse(last_line: str) -> None:
    """Reading through the split and the cache gives what parsing the whole text gives."""
    head = yaml.safe_dump({"dataProduct": data_product(component(), component(OTHER_ID))})
    descriptor = head + last_line
    assert split_component_descriptor(descriptor) is not None

    fast = DescriptorReader().read(DescriptorKind.COMPONENT, descriptor)

    assert fast == read_component_fully(descriptor)
    assert fast.component_id == OTHER_ID


@pytest.mark.parametrize(
    "path", descriptor_files("component-descriptor."), ids=lambda path: path.name
)
def test_a_realistic_component_descriptor_is_read_like_a_full_parse(path: Path) -> None:
    """COMPONENT_DESCRIPTOR bodies shaped like real ones (comments, flow style, nulls) give
    the component to provision, as parsing the whole text does."""
    descriptor = path.read_text(encoding="utf-8")

    fast = DescriptorReader().read(DescriptorKind.COMPONENT, descriptor)

    assert fast == read_component_fully(descriptor)
    assert fast.component_id == yaml.safe_load(descriptor)["componentIdToProvision"]


def test_fast_path_equals_full_parse_with_crlf_line_ends() -> None:
    """Windows line ends do not change the result of the fast path."""
    descriptor = request_for()["descriptor"].replace("\n", "\r\n")

    fast = DescriptorReader().read(DescriptorKind.COMPONENT, descriptor)

    assert fast == read_component_fully(descriptor)


def test_fast_path_parses_the_head_once_per_unit() -> None:
    """Requests for several components of one unit parse its `dataProduct:` head once."""
    dp = data_product(component(), component(OTHER_ID))
    reader = DescriptorReader()

    targets = [
        reader.read(DescriptorKind.COMPONENT, component_descriptor(dp, cid))
        for cid in (CID, OTHER_ID, CID)
    ]

    assert [t.component_id for t in targets] == [CID, OTHER_ID, CID]
    assert (reader.stats.misses, reader.stats.hits) == (1, 2)


@pytest.mark.parametrize(
    "descriptor",
    [
        f"componentIdToProvision: {CID}\ndataProduct:\n  components:\n  - id: {CID}\n",
        f"dataProduct:\n  components:\n  - id: {CID}\ncomponentIdToProvision:\n  {CID}\n",
        f"# a comment first\ndataProduct:\n  components:\n  - id: {CID}\n"
        f"componentIdToProvision: {CID}\n",
        f"dataProduct:\n  components:\n  - id: &target {CID}\ncomponentIdToProvision: *target\n",
    ],
    ids=["id-first", "id-on-next-line", "comment-first", "alias-to-head"],
)
def test_other_layouts_are_read_like_a_full_parse(descriptor: str) -> None:
    """Descriptors not written head-then-id-line still give the full-parse result."""
    fast = DescriptorReader().read(DescriptorKind.COMPONENT, descriptor)

    assert fast == read_component_fully(descriptor)
    assert fast.component_id == CID


def test_document_marker_in_head_is_rejected_like_a_full_parse() -> None:
    """A head that ends its YAML document early does not slip through the fast path."""
    descriptor = f"dataProduct:\n  components:\n  - id: {CID}\n...\ncomponentIdToProvision: {CID}\n"

    with pytest.raises(InvalidRequestError):
        read_component_fully(descriptor)
    with pytest.raises(InvalidRequestError):
        DescriptorReader().read(DescriptorKind.COMPONENT, descriptor)


def test_a_dependents_head_is_read_as_the_shared_head_plus_its_info_blocks() -> None:
    """A head that differs from one already read only by `info:` keys on the entries of the
    dependencies (as the coordinator sends a dependent) is not parsed whole again, and reads
    as parsing the whole text does."""
    from provisioner.domain.rendering import DescriptorTexts

    storage = {**component(CID), "notes": "line one\nline two\n"}
    port = {**component(OTHER_ID), "dependsOn": [CID]}
    texts = DescriptorTexts(data_product(storage, port))
    reader = DescriptorReader()
    reader.read(DescriptorKind.COMPONENT, texts.component(CID).text)
    info = {"publicInfo": {"table": "t: 1\n"}, "privateInfo": {"pw": "'s\"", "empty": {}}}

    descriptor = texts.component(OTHER_ID, {CID: info}).text
    fast = reader.read(DescriptorKind.COMPONENT, descriptor)

    assert fast == read_component_fully(descriptor)
    assert fast.dependency_info == {CID: info}
    assert (reader.stats.misses, reader.stats.hits) == (2, 1)  # the head's miss, the base's hit
