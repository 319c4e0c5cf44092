"""The mock Tech Adapter, driven over its HTTP interface in-process."""

from __future__ import annotations

import asyncio
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


def assert_request_validation_error(response: httpx.Response, problem: str) -> None:
    assert response.status_code == 400
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
        "aclRefs": [],
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


async def test_unknown_token_is_a_bad_request(client: httpx.AsyncClient) -> None:
    """Polling a token the adapter never handed out answers 400."""
    assert_request_validation_error(await poll(client, "f" * TOKEN_LENGTH), "unknown")


async def test_never_finish_keeps_the_token_running(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With neverFinish the status answers RUNNING however long and often it is polled."""
    token = (await provision(client, request_for(mode="async", neverFinish=True))).json()
    clock.advance(86_400)

    assert [await poll_status(client, token) for _ in range(5)] == ["RUNNING"] * 5


async def test_forget_tokens_makes_earlier_tokens_unknown(client: httpx.AsyncClient) -> None:
    """After forget-tokens, polling an earlier token answers 400, as after an adapter restart."""
    token = (await provision(client, request_for(mode="async"))).json()

    forgotten = await client.post("/mock/forget-tokens")

    assert forgotten.json() == {"forgotten": 1}
    assert_request_validation_error(await poll(client, token), "unknown")


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
        ({"invalid": ["why"]}, "specific.mock.invalid"),
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


async def test_validate_v2_unknown_token_is_a_bad_request(client: httpx.AsyncClient) -> None:
    """Polling an unknown validation token answers 400."""
    response = await client.get(f"/v2/validate/{'0' * TOKEN_LENGTH}/status")

    assert_request_validation_error(response, "unknown")


# --- updateacl and reverse provisioning ------------------------------------------------------


async def test_updateacl_records_the_refs_of_the_component(client: httpx.AsyncClient) -> None:
    """updateacl answers COMPLETED listing the refs and records them for the component."""
    refs = ["user:alice", "group:dev"]
    provision_info = {"request": json.dumps(request_for()), "result": "ok"}

    response = await client.post(
        "/v1/updateacl", json={"refs": refs, "provisionInfo": provision_info}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["info"]["publicInfo"]["grantedRefs"]["value"] == "user:alice, group:dev"
    assert (await components(client))[CID]["aclRefs"] == refs


async def test_updateacl_with_an_unreadable_request_records_under_null(
    client: httpx.AsyncClient,
) -> None:
    """When provisionInfo.request cannot be read, the refs are recorded under null."""
    body = {"refs": ["user:bob"], "provisionInfo": {"request": "not json", "result": ""}}

    response = await client.post("/v1/updateacl", json=body)

    assert response.status_code == 200
    assert (await components(client))["null"]["aclRefs"] == ["user:bob"]


@pytest.mark.parametrize(
    "body",
    [{"refs": ["user:bob"]}, {"provisionInfo": {"request": "", "result": ""}}, {"refs": "bob"}],
)
async def test_updateacl_without_refs_or_provision_info_is_a_bad_request(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """updateacl needs a list of refs and a provisionInfo object."""
    response = await client.post("/v1/updateacl", json=body)

    assert response.status_code == 400


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


async def test_reverse_provisioning_status_of_unknown_token_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    """The reverse-provisioning status of a token never handed out answers 400."""
    response = await client.get("/v1/reverse-provisioning/abc/status")

    assert_request_validation_error(response, "unknown")


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
