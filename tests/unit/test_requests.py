"""What the runner sends adapters about other components, with in-memory fakes: each
dependency's provisioning info (fresh from the same operation, or from an earlier one), never
in validation requests; privateInfo in ``latestEnrichedDescriptor`` by least privilege; and the
system step of an unregistered unit-level template, which calls no adapter."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml

from provisioner.domain.status import ComponentStatus, OperationStatus, OperationType, TaskStatus
from provisioner.engine.ports import AdapterRequest, ClaimedOperation
from provisioner.engine.requests import RequestBuilder
from tests.support import component
from tests.unit.fakes import FakeDirectory, Script
from tests.unit.test_engine import UNIT, Harness, deploy

STORE, PORT = "urn:itm:store", "urn:itm:port"


def sent_components(request: AdapterRequest) -> dict[str, Any]:
    document = yaml.safe_load(request.descriptor.text)["dataProduct"]
    return {c["id"]: c for c in document["components"]}


def enriched_private(request: AdapterRequest, component_id: str) -> Any:
    assert request.latest_enriched_descriptor is not None
    document = yaml.safe_load(request.latest_enriched_descriptor.text)
    [entry] = [c for c in document["components"] if c["id"] == component_id]
    return entry["info"]["privateInfo"]


def storage_and_port() -> ClaimedOperation:
    return deploy(
        component("storage", template=STORE),
        component("port", template=PORT, depends_on=["storage"]),
        component("other", template=PORT),
    )


async def test_a_dependent_is_sent_what_its_dependency_returned_in_this_operation() -> None:
    """The port's provision request carries the storage's public and private info from the
    storage's provision a moment before; the storage's and others' entries carry none."""
    harness = Harness(storage_and_port(), scripts={"storage": Script(info={"table": "t1"})})

    assert await harness.run() is OperationStatus.SUCCEEDED

    to_port = sent_components(harness.adapters.requests["port"])
    assert to_port["storage"]["info"] == {
        "publicInfo": {"table": "t1"},
        "privateInfo": {"s": "storage"},
    }
    assert "info" not in to_port["other"]
    assert all(
        "info" not in c for c in sent_components(harness.adapters.requests["storage"]).values()
    )


async def test_validation_requests_carry_no_dependency_info() -> None:
    """The Tech Adapter API's dependency section does not apply to validation endpoints."""
    harness = Harness(storage_and_port())

    assert await harness.run() is OperationStatus.SUCCEEDED

    validation = sent_components(harness.adapters.validation_requests["port"])
    assert all("info" not in c for c in validation.values())


def deployed(claimed: ClaimedOperation, component_id: str, **changes: Any) -> None:
    """``component_id`` as an earlier operation left it: provisioned, with results."""
    claimed.components[component_id] = replace(
        claimed.components[component_id],
        status=ComponentStatus.DEPLOYED,
        last_provisioned_operation_id="op-0",
        last_operation_id="op-0",
        last_operation_type=OperationType.DEPLOY,
        last_task_status=TaskStatus.SUCCEEDED,
        **changes,
    )


async def test_a_dependency_outside_the_operation_is_sent_as_last_provisioned() -> None:
    """Deploying the port alone sends it the storage's info from its earlier provision; a
    dependency never provisioned carries no info."""
    claimed = storage_and_port()
    # As the plan of a deploy of the port alone has it: the system step, then the port.
    claimed.tasks = [
        replace(t, depends_on=(UNIT,)) if t.component_id == "port" else t
        for t in claimed.tasks
        if t.component_id in (UNIT, "port")
    ]
    deployed(claimed, "storage", public_info={"table": "t0"}, private_info={"pw": "p0"})
    harness = Harness(claimed)

    assert await harness.run() is OperationStatus.SUCCEEDED

    to_port = sent_components(harness.adapters.requests["port"])
    assert to_port["storage"]["info"] == {
        "publicInfo": {"table": "t0"},
        "privateInfo": {"pw": "p0"},
    }

    never = storage_and_port()
    builder = RequestBuilder(never)
    port_task = next(t for t in never.tasks if t.component_id == "port")
    assert builder.dependency_info(port_task, never.components.get) == {}


def with_results(share: bool = False) -> tuple[RequestBuilder, ClaimedOperation]:
    """A redeploy whose components all have private info from the first deploy."""
    claimed = storage_and_port()
    claimed.release_descriptor_operation_id = claimed.header.id
    for cid, template in (("storage", STORE), ("port", PORT), ("other", PORT)):
        deployed(claimed, cid, infrastructure_template_id=template, private_info={"secret": cid})
    return RequestBuilder(claimed, share_private_info=share), claimed


def request_to(builder: RequestBuilder, claimed: ClaimedOperation, cid: str) -> AdapterRequest:
    task = next(t for t in claimed.tasks if t.component_id == cid)
    return builder.request(task, claimed.components.get)


def test_latest_enriched_descriptor_has_private_info_of_the_adapters_own_components() -> None:
    """Each adapter sees the privateInfo of its own template's components only (empty for
    the others); a dependency's is in the dependency's entry of the descriptor instead."""
    builder, claimed = with_results()

    to_port, to_store = (request_to(builder, claimed, cid) for cid in ("port", "storage"))

    assert enriched_private(to_port, "storage") == {}
    assert enriched_private(to_port, "port") == {"secret": "port"}
    assert enriched_private(to_port, "other") == {"secret": "other"}
    assert enriched_private(to_store, "storage") == {"secret": "storage"}
    assert enriched_private(to_store, "port") == {}
    assert sent_components(to_port)["storage"]["info"]["privateInfo"] == {"secret": "storage"}
    same_template = request_to(builder, claimed, "other")
    assert same_template.latest_enriched_descriptor is to_port.latest_enriched_descriptor


def test_sharing_private_info_sends_one_enriched_descriptor_with_everything() -> None:
    builder, claimed = with_results(share=True)

    to_port, to_store = (request_to(builder, claimed, cid) for cid in ("port", "storage"))

    assert to_port.latest_enriched_descriptor is to_store.latest_enriched_descriptor
    assert enriched_private(to_port, "storage") == {"secret": "storage"}


def test_with_no_private_info_to_hide_every_adapter_shares_one_text() -> None:
    """A first deploy (no results yet) serialises the enriched descriptor once."""
    claimed = storage_and_port()
    builder = RequestBuilder(claimed)

    assert request_to(builder, claimed, "port").latest_enriched_descriptor is (
        request_to(builder, claimed, "storage").latest_enriched_descriptor
    )


def test_only_what_the_run_calls_is_serialised_ahead() -> None:
    """The unit's own text (a serialisation of the whole unit) is made ahead only if the
    system step calls an adapter; asked for anyway, it is what it would have been."""
    claimed = deploy(component("a"), template="urn:dmb:itm:dataproduct-provisioner:1")
    system = next(t for t in claimed.tasks if t.is_system)

    builder = RequestBuilder(claimed, calling={"a"})

    texts = builder._texts[claimed.header.id]
    assert "unit" not in vars(texts)  # not serialised at construction
    made = builder.request(system, claimed.components.get)
    ahead = RequestBuilder(claimed).request(system, claimed.components.get)
    assert made.descriptor.json_parts() == ahead.descriptor.json_parts()


async def test_an_unregistered_unit_template_makes_the_system_step_succeed_without_a_call() -> None:
    """The unit's own template, registered nowhere, is no adapter to call: the system step
    succeeds, its event says why, and nothing downstream is held up."""
    template = "urn:dmb:itm:dataproduct-provisioner:1"
    harness = Harness(
        deploy(component("a"), template=template), directory=FakeDirectory(missing={template})
    )

    assert await harness.run() is OperationStatus.SUCCEEDED

    assert UNIT not in harness.adapters.started + harness.adapters.validated
    assert harness.task(UNIT).status is TaskStatus.SUCCEEDED
    assert harness.component(UNIT).status is ComponentStatus.DEPLOYED
    [note] = [
        event.detail["note"]
        for write in harness.store.writes
        for event in write.events
        if event.component_id == UNIT and event.detail and "note" in event.detail
    ]
    assert template in note
    assert "made no call" in note


async def test_a_components_unregistered_template_still_fails_its_task() -> None:
    harness = Harness(
        deploy(component("a", template="gone")), directory=FakeDirectory(missing={"gone"})
    )

    assert await harness.run() is OperationStatus.FAILED

    assert harness.task("a").status is TaskStatus.FAILED
