"""The README's screenshots of the dashboard (``make screenshots`` keeps them in ``docs/``):
a data product part-way through a deploy that hit an adapter error, beside other releases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import REALISTIC_ADAPTERS, Api
from tests.browser.test_dashboard import node, open_operation
from tests.support import ServerThread, component, unit

pytestmark = pytest.mark.browser

S3, AIRBYTE, DBT, SNOWFLAKE, AIRFLOW = REALISTIC_ADAPTERS


def sales_analytics(unit_id: str) -> dict[str, object]:
    """Storage, ingestion, a transformation, output ports and a scheduler: the ingestion runs
    long, one output port's adapter refuses its request."""
    c = f"urn:dmb:cmp:{unit_id.removeprefix('urn:dmb:dp:')}"
    return unit(
        unit_id,
        [
            component(
                f"{c}:raw-storage",
                template=S3,
                kind="storage",
                latencyMs=300,
                publicInfo={
                    "bucket": {"type": "string", "label": "Bucket", "value": "s3://sales-raw"}
                },
            ),
            component(f"{c}:curated-storage", template=S3, kind="storage", latencyMs=300),
            component(
                f"{c}:ingestion", template=AIRBYTE, depends_on=[f"{c}:raw-storage"], latencyMs=60000
            ),
            component(
                f"{c}:transformation",
                template=DBT,
                depends_on=[f"{c}:ingestion", f"{c}:curated-storage"],
            ),
            component(
                f"{c}:orders-port",
                template=SNOWFLAKE,
                kind="outputport",
                depends_on=[f"{c}:transformation"],
            ),
            component(
                f"{c}:files-port",
                template=SNOWFLAKE,
                kind="outputport",
                depends_on=[f"{c}:raw-storage"],
                fail="provision",
                failHow="400",
            ),
            component(f"{c}:scheduler", template=AIRFLOW, depends_on=[f"{c}:transformation"]),
        ],
        version="0.3.0",
        template=None,
    )


def test_screenshots_of_the_dashboard(
    page: Page, dashboard: ServerThread, api: Api, shoot: Callable[..., Path]
) -> None:
    """The releases page and an operation's page (graph, the failed task's details), taken
    and checked not to be blank. The ids are fixed, for the README: this test alone uses
    them, on a service and a mock adapter that are new in each session."""
    for name, environment, fail in (
        ("finance:ledger", "production", False),
        ("marketing:campaigns", "development", True),
    ):
        unit_id = f"urn:dmb:dp:{name}:1"
        parts = [
            component(f"{unit_id}:warehouse", template=SNOWFLAKE),
            component(
                f"{unit_id}:loader",
                template=AIRBYTE,
                depends_on=[f"{unit_id}:warehouse"],
                **({"fail": "provision"} if fail else {}),
            ),
        ]
        api.ended(api.deploy(unit(unit_id, parts, environment=environment, version="1.4.2")))
    unit_id = "urn:dmb:dp:sales:sales-analytics:0"
    operation_id = api.deploy(sales_analytics(unit_id))
    try:
        c = "urn:dmb:cmp:sales:sales-analytics:0"
        open_operation(page, dashboard, operation_id)
        expect(node(page, f"{c}:files-port")).to_have_attribute("data-status", "FAILED")
        expect(node(page, f"{c}:ingestion")).to_have_attribute("data-status", "RUNNING")
        node(page, f"{c}:files-port").click()
        expect(page.locator("#task-error")).to_be_visible()
        shoot("dashboard-operation")

        page.goto(f"{dashboard.url}/ui#/releases")
        expect(page.locator("tbody tr", has_text=unit_id)).to_be_visible()
        expect(page.locator("tbody tr", has_text="ledger")).to_contain_text("DEPLOYED")
        shoot("dashboard-releases", height=360)
    finally:
        api.cancel_if_active(operation_id)
