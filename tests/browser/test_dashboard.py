"""The dashboard in a real browser against the service as main has it (events polled, no
authentication): releases, an operation's graph updated live, cancel, retry, repair."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Api
from tests.support import ServerThread, component, unit

pytestmark = pytest.mark.browser

# The fill of a node of each task status (style.css's --tint colours).
NODE_FILL = {
    "WAITING": "rgb(238, 240, 242)",
    "RUNNING": "rgb(219, 234, 254)",
    "SUCCEEDED": "rgb(220, 252, 231)",
    "FAILED": "rgb(254, 228, 226)",
    "SKIPPED": "rgb(254, 243, 199)",
    "CANCELLED": "rgb(237, 233, 254)",
}


def node(page: Page, component_id: str) -> object:
    return page.locator(f'.node[data-component-id="{component_id}"]')


def open_operation(page: Page, service: ServerThread, operation_id: str) -> None:
    page.goto(f"{service.url}/ui#/operations/{operation_id}")
    expect(page.locator("svg.dag .node").first).to_be_visible()


def test_the_releases_page_lists_deployed_units_live_and_filters_them(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str, shoot: Callable[..., Path]
) -> None:
    """A deployed unit is listed with its status, version and last operation; one deployed
    while the page is open appears without a reload; the status filter applies and is kept
    in the address."""
    first = f"{unit_prefix}-a:0"
    api.ended(api.deploy(unit(first, [component(f"{first}:c")], version="2.1.0")))
    page.goto(f"{dashboard.url}/ui#/releases?q={quote(unit_prefix)}")
    row = page.locator("tbody tr", has_text=first)
    expect(row).to_have_count(1)
    expect(row.locator(".badge").first).to_have_text("✓ DEPLOYED")
    expect(row).to_contain_text("2.1.0")
    expect(row).to_contain_text("development")
    expect(row.get_by_role("link", name="deploy")).to_be_visible()
    expect(row.locator('td .badge[data-status="SUCCEEDED"]')).to_be_visible()
    shoot("releases")

    page.evaluate("window.notReloaded = true")
    second = f"{unit_prefix}-b:0"
    api.ended(api.deploy(unit(second, [component(f"{second}:c")])))
    expect(page.locator("tbody tr")).to_have_count(2, timeout=15_000)
    assert page.evaluate("window.notReloaded") is True

    page.get_by_label("Status").select_option("CORRUPT")
    expect(page.get_by_text("No release matches.")).to_be_visible()
    assert "status=CORRUPT" in page.evaluate("location.hash")
    page.get_by_label("Status").select_option("DEPLOYED")
    expect(page.locator("tbody tr")).to_have_count(2)


def test_an_operation_is_drawn_as_one_node_per_task_coloured_by_status(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str, shoot: Callable[..., Path]
) -> None:
    """One node per task (the system step included) and one edge per dependency; each node
    shows its status in colour and text; selecting one (mouse or keyboard) shows its adapter,
    the adapter's error, its logs and public info."""
    unit_id = f"{unit_prefix}:0"
    ok, bad, after = f"{unit_id}:ok", f"{unit_id}:bad", f"{unit_id}:after"
    document = unit(
        unit_id,
        [
            component(ok, publicInfo={"table": "sales.orders"}),
            component(bad, fail="provision", failHow="400"),
            component(after, depends_on=[bad, ok]),
        ],
    )
    operation = api.ended(api.deploy(document))
    open_operation(page, dashboard, operation["id"])

    tasks = {task["componentId"]: task for task in operation["tasks"]}
    assert {task["status"] for task in tasks.values()} == {"SUCCEEDED", "FAILED", "SKIPPED"}
    expect(page.locator("svg.dag .node")).to_have_count(len(tasks))
    for component_id, task in tasks.items():
        drawn = node(page, component_id)
        expect(drawn).to_have_attribute("data-status", task["status"])
        expect(drawn).to_contain_text(task["status"])
        fill = drawn.locator(".node-box").evaluate("box => getComputedStyle(box).fill")
        assert fill == NODE_FILL[task["status"]], (component_id, fill)
    edges = {
        (edge.get_attribute("data-from"), edge.get_attribute("data-to"))
        for edge in page.locator("svg.dag .edge").all()
    }
    assert edges == {(dep, cid) for cid, task in tasks.items() for dep in task["dependsOn"]}
    expect(node(page, unit_id)).to_contain_text("system step")

    node(page, bad).click()
    details = page.locator(".details")
    expect(details.locator("#task-adapter")).to_have_text("urn:test:itm:mock:0")
    expect(details.locator("#task-error")).to_contain_text("The mock adapter rejected the request")
    expect(details.locator("#task-error")).to_contain_text("Status code 400")
    expect(details).to_contain_text("CORRUPT")  # the component as it is now
    shoot("operation", full_page=True)

    node(page, ok).focus()
    page.keyboard.press("Enter")
    expect(node(page, ok)).to_have_attribute("aria-pressed", "true")
    expect(details.locator("table")).to_contain_text("INFO")  # the adapter's log
    expect(details.locator("pre.json")).to_contain_text("sales.orders")
    expect(
        page.locator("section", has=page.locator("#plan-title")).locator("tbody tr")
    ).to_have_count(len(tasks))


def test_a_running_node_turns_succeeded_without_a_reload(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str
) -> None:
    """Following the operation's event stream, the page recolours a node the moment its task
    succeeds, and notices the operation's end."""
    unit_id = f"{unit_prefix}:0"
    slow = f"{unit_id}:slow"
    operation_id = api.deploy(unit(unit_id, [component(slow, latencyMs=3000)]))
    open_operation(page, dashboard, operation_id)
    expect(node(page, slow)).to_have_attribute("data-status", "RUNNING")
    page.evaluate("window.notReloaded = true")
    expect(page.locator(".live")).to_contain_text("event stream")

    expect(node(page, slow)).to_have_attribute("data-status", "SUCCEEDED", timeout=20_000)
    fill = node(page, slow).locator(".node-box").evaluate("box => getComputedStyle(box).fill")
    assert fill == NODE_FILL["SUCCEEDED"]
    expect(page.locator("#operation-status")).to_have_text("✓ SUCCEEDED")
    expect(page.locator(".live")).to_contain_text("Ended")
    assert page.evaluate("window.notReloaded") is True


def test_cancel_from_the_page_after_confirming(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str
) -> None:
    """Cancel asks for confirmation (dismissing it does nothing), then cancels: the page
    shows the operation and the cut task CANCELLED, as the API does."""
    unit_id = f"{unit_prefix}:0"
    slow = f"{unit_id}:slow"
    operation_id = api.deploy(unit(unit_id, [component(slow, latencyMs=30000)]))
    try:
        open_operation(page, dashboard, operation_id)
        expect(node(page, slow)).to_have_attribute("data-status", "RUNNING")

        page.get_by_role("button", name="Cancel", exact=True).click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Cancel this operation?")
        dialog.get_by_role("button", name="Cancel", exact=True).click()  # dismiss
        expect(dialog).to_have_count(0)
        assert api.operation(operation_id)["status"] == "RUNNING"

        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel operation").click()
        expect(page.locator("#operation-status")).to_have_text("⊘ CANCELLED", timeout=15_000)
        expect(node(page, slow)).to_have_attribute("data-status", "CANCELLED")
        assert api.ended(operation_id)["status"] == "CANCELLED"
        expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    finally:
        api.cancel_if_active(operation_id)


def test_retry_from_the_page_opens_the_new_operation(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str
) -> None:
    """Retry on a failed operation starts a new one and shows it, linked to the first."""
    unit_id = f"{unit_prefix}:0"
    failed = api.ended(api.deploy(unit(unit_id, [component(f"{unit_id}:bad", fail="provision")])))
    assert failed["status"] == "FAILED"
    open_operation(page, dashboard, failed["id"])
    page.get_by_role("button", name="Retry").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry").click()

    expect(page.get_by_role("link", name=failed["id"])).to_be_visible()  # "Retry of"
    retried = page.evaluate("decodeURIComponent(location.hash.split('/').pop())")
    assert retried != failed["id"]
    assert api.operation(retried)["retryOf"] == failed["id"]


def test_action_buttons_drawn_the_same_stay_in_place_as_the_page_redraws(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str
) -> None:
    """The page draws itself, then again as its live events and reads arrive. A button drawn
    the same each time stays the same element: replaced between the press and the release of
    a click, it would lose that click (seen: a Retry whose dialog never opened)."""
    unit_id = f"{unit_prefix}:0"
    failed = api.ended(api.deploy(unit(unit_id, [component(f"{unit_id}:bad", fail="provision")])))
    page.add_init_script(
        """new MutationObserver(() => {
             window.firstRetry ??= document.querySelector('[data-action="retry"]');
           }).observe(document, { childList: true, subtree: true });"""
    )
    open_operation(page, dashboard, failed["id"])
    # The history comes from the live events, so it is drawn by a later drawing than the first.
    history = page.locator("section[aria-labelledby=history-title] tbody tr")
    expect(history.first).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert page.evaluate("window.firstRetry !== null")
    assert page.evaluate("document.querySelector('[data-action=\"retry\"]') === window.firstRetry")


def test_repair_of_a_corrupt_component_from_the_page_and_the_release_follows(
    page: Page, dashboard: ServerThread, api: Api, unit_prefix: str, shoot: Callable[..., Path]
) -> None:
    """A CORRUPT component offers Repair…, which asks to mark it deployed or not deployed and
    for a reason; confirmed, the component and the release's status follow (CORRUPT to
    DEPLOYED) without a reload, and the OVERRIDE operation shows the reason and no task."""
    unit_id = f"{unit_prefix}:0"
    good, bad = f"{unit_id}:good", f"{unit_id}:bad"
    api.ended(api.deploy(unit(unit_id, [component(good), component(bad, fail="provision")])))
    page.goto(f"{dashboard.url}/ui#/releases/{quote(unit_id, safe='')}/development")
    expect(page.locator("#release-status")).to_have_text("✕ CORRUPT")
    row = page.locator("tbody tr", has_text="bad")
    expect(row.locator(".badge").first).to_have_text("✕ CORRUPT")
    page.evaluate("window.notReloaded = true")

    row.get_by_role("button", name=f"Repair {bad}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Mark bad as deployed or not deployed?")
    dialog.get_by_label("Mark as DEPLOYED", exact=True).check()
    dialog.get_by_label("Reason").fill("checked the bucket by hand")
    shoot("repair-dialog")
    dialog.get_by_role("button", name="Repair").click()

    expect(row.locator(".badge").first).to_have_text("✓ DEPLOYED", timeout=15_000)
    expect(page.locator("#release-status")).to_have_text("✓ DEPLOYED", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    release = api.http.get(f"/v1/deployment-units/{unit_id}/environments/development").json()
    assert release["status"] == "DEPLOYED"
    override = api.operation(release["lastOperationId"])
    assert (override["type"], override["reason"]) == ("OVERRIDE", "checked the bucket by hand")

    page.get_by_role("link", name="override").first.click()
    expect(page.locator("#operation-reason")).to_have_text("checked the bucket by hand")
    expect(page.locator("#operation-component")).to_have_text(bad)
    expect(page.locator("#no-tasks")).to_contain_text("An override runs no task")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Override {unit_id}")
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    shoot("override-operation", full_page=True)
