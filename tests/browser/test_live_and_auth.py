"""The dashboard on the service's event stream (resuming after a dropped connection) and with
authentication on (API tokens made in the service's database)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, Response, expect

from tests.browser.conftest import VIEWPORT, Api, Gated
from tests.browser.test_dashboard import node, open_operation
from tests.browser.wiretap import DropFirstStream
from tests.support import ServerThread, component, unit

pytestmark = pytest.mark.browser


def test_with_an_event_stream_the_page_follows_it_and_resumes_after_a_drop(
    page: Page, streaming: tuple[ServerThread, DropFirstStream], unit_prefix: str
) -> None:
    """The events come over text/event-stream (not polled); when the stream drops, the page
    reconnects with Last-Event-ID and loses or repeats no event; the node turns SUCCEEDED
    without a reload."""
    server, stream = streaming
    answers: list[str] = []

    def record(response: Response) -> None:
        if response.url.split("?")[0].endswith("/events"):
            answers.append(response.headers.get("content-type", ""))

    page.on("response", record)
    api = Api(server.url)
    try:
        unit_id = f"{unit_prefix}:0"
        slow = f"{unit_id}:slow"
        operation_id = api.deploy(unit(unit_id, [component(slow, latencyMs=3000)]))
        open_operation(page, server, operation_id)
        expect(node(page, slow)).to_have_attribute("data-status", "RUNNING")
        expect(page.locator(".live")).to_contain_text("event stream")
        page.evaluate("window.notReloaded = true")

        expect(node(page, slow)).to_have_attribute("data-status", "SUCCEEDED", timeout=20_000)
        expect(page.locator("#operation-status")).to_have_text("✓ SUCCEEDED")
        expect(page.locator(".live")).to_contain_text("Ended")
        assert page.evaluate("window.notReloaded") is True

        events = api.http.get(f"/v1/operations/{operation_id}/events").json()["items"]
        history = page.locator("section", has=page.locator("#history-title")).locator("tbody tr")
        expect(history).to_have_count(len(events))
        assert stream.resumed_from
        assert stream.resumed_from[0] == events[2]["id"]
        assert len(answers) >= 2
        assert all(kind.startswith("text/event-stream") for kind in answers), answers
    finally:
        page.remove_listener("response", record)
        api.http.close()


def test_with_authentication_a_token_is_asked_once_per_browser_session(
    browser: Browser, gated: Gated, unit_prefix: str
) -> None:
    """Without a token the page asks for one (again if refused), keeps it for the tab's
    session (a reload does not ask), sends it with every request (the event stream too),
    shows a 403's missing scope on the action refused; another browser session asks again."""
    server, gate = gated.server, gated.requests
    api = Api(server.url, token=gated.secrets["operator"])
    unit_id = f"{unit_prefix}:0"
    slow = f"{unit_id}:slow"
    operation_id = api.deploy(unit(unit_id, [component(slow, latencyMs=30000)]))
    context = browser.new_context(viewport=VIEWPORT)
    other = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/ui")
        dialog = page.get_by_role("dialog", name="Sign in")
        expect(dialog).to_contain_text("needs a token")
        dialog.get_by_label("Token").fill("not-a-token")
        dialog.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("dialog", name="Sign in")).to_contain_text("refused")
        page.get_by_label("Token").fill(gated.secrets["reader"])
        signed_in = len(gate.seen)
        page.get_by_role("dialog").get_by_role("button", name="Sign in").click()
        expect(page.locator("tbody tr", has_text=unit_id)).to_have_count(1)

        page.reload()
        expect(page.locator("tbody tr", has_text=unit_id)).to_have_count(1)
        expect(page.get_by_role("dialog")).to_have_count(0)

        open_operation(page, server, operation_id)
        expect(node(page, slow)).to_have_attribute("data-status", "RUNNING")
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.get_by_role("dialog").get_by_role("button", name="Cancel operation").click()
        expect(page.locator(".notice.error")).to_contain_text("deploy:development")
        expect(page.get_by_role("button", name="Cancel (not allowed)")).to_be_disabled()
        sent = gate.seen[signed_in:]
        assert any(path.endswith("/events") for _, path, _ in sent)
        assert {token for _, _, token in sent} == {gated.secrets["reader"]}
        assert api.operation(operation_id)["status"] == "RUNNING"

        fresh = other.new_page()
        fresh.goto(f"{server.url}/ui")
        expect(fresh.get_by_role("dialog", name="Sign in")).to_be_visible()
    finally:
        context.close()
        other.close()
        api.cancel_if_active(operation_id)
        api.http.close()
