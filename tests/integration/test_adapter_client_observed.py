"""What the Tech Adapter client reports of each exchange, and the correlation headers it sends:
its wire edge cases, scripted with respx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from provisioner import correlation
from provisioner.adapters.client import TechAdapterClient
from provisioner.correlation import Correlation
from provisioner.engine.ports import AdapterEndpoint, AdapterErrorKind
from provisioner.errors import AdapterError
from tests.integration.test_adapter_client import (
    ENDPOINT,
    POLICY,
    RETRIES,
    STATUS_PATH,
    URL,
    accepted,
    request,
    status,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Exchanges:
    """An ``ExchangeObserver`` that keeps what it is told."""

    def __init__(self) -> None:
        self.started = 0
        self.ended: list[tuple[int | None, AdapterErrorKind | None, str | None]] = []
        self.errors: list[AdapterErrorKind] = []

    def exchange_started(self, endpoint: AdapterEndpoint) -> None:
        self.started += 1

    def exchange_ended(
        self,
        endpoint: AdapterEndpoint,
        *,
        seconds: float,
        status_code: int | None,
        error: AdapterErrorKind | None,
        cause: str | None = None,
    ) -> None:
        assert seconds >= 0
        self.ended.append((status_code, error, cause))

    def adapter_error(
        self, endpoint: AdapterEndpoint, kind: AdapterErrorKind, status_code: int | None = None
    ) -> None:
        self.errors.append(kind)


@pytest.fixture
def seen() -> Exchanges:
    return Exchanges()


@pytest.fixture
async def client(seen: Exchanges) -> AsyncIterator[TechAdapterClient]:
    adapter_client = TechAdapterClient(POLICY, observer=seen)
    yield adapter_client
    await adapter_client.aclose()


@pytest.fixture
def adapter() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=URL, assert_all_called=False) as router:
        yield router


async def test_each_request_carries_the_work_s_request_id_and_a_new_span(
    client: TechAdapterClient, adapter: respx.MockRouter
) -> None:
    post = adapter.post("/v1/provision").mock(return_value=accepted())
    poll = adapter.get(path__regex=STATUS_PATH).mock(return_value=status("COMPLETED"))
    with correlation.bound(Correlation("req-5", TRACE)):
        answer = await client.start(ENDPOINT, request())
        assert not isinstance(answer, Exception)
        await client.wait(ENDPOINT, "tok-1")
    sent = [route.calls[0].request.headers for route in (post, poll)]
    assert [headers["x-request-id"] for headers in sent] == ["req-5", "req-5"]
    parents = [headers["traceparent"].split("-") for headers in sent]
    assert [(p[0], p[1], p[3]) for p in parents] == [("00", TRACE, "01")] * 2
    assert parents[0][2] != parents[1][2]
    assert sent[0]["authorization"] == "Bearer s3cret"  # the registry's headers are kept


async def test_every_attempt_is_an_exchange_and_an_error_answer_counts_as_http(
    client: TechAdapterClient, adapter: respx.MockRouter, seen: Exchanges
) -> None:
    adapter.post("/v1/provision").mock(return_value=httpx.Response(503))
    with pytest.raises(AdapterError):
        await client.start(ENDPOINT, request())
    assert seen.started == RETRIES
    assert seen.ended == [(503, "http", None)] * RETRIES


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "connection"),
        (httpx.RemoteProtocolError("peer closed"), "connection"),
        (httpx.DecodingError("bad gzip"), "protocol"),
    ],
)
async def test_a_failure_on_the_wire_is_classified(
    client: TechAdapterClient,
    adapter: respx.MockRouter,
    seen: Exchanges,
    failure: Exception,
    kind: AdapterErrorKind,
) -> None:
    adapter.get(path__regex=STATUS_PATH).mock(side_effect=failure)
    with pytest.raises(AdapterError):
        await client.wait(ENDPOINT, "tok-1")
    assert seen.ended[0] == (None, kind, type(failure).__name__)


async def test_an_answer_that_cannot_be_used_is_a_protocol_error(
    client: TechAdapterClient, adapter: respx.MockRouter, seen: Exchanges
) -> None:
    """The exchange itself was answered (200); what it said was not a usable result."""
    adapter.post("/v1/provision").mock(return_value=httpx.Response(200, text="<html>"))
    with pytest.raises(AdapterError, match="invalid answer"):
        await client.start(ENDPOINT, request())
    assert seen.ended == [(200, None, None)]
    assert seen.errors == ["protocol"]


async def test_a_usable_answer_is_no_error(
    client: TechAdapterClient, adapter: respx.MockRouter, seen: Exchanges
) -> None:
    adapter.post("/v1/provision").mock(return_value=status("COMPLETED"))
    result: Any = await client.start(ENDPOINT, request())
    assert result.succeeded
    assert seen.ended == [(200, None, None)]
    assert seen.errors == []
