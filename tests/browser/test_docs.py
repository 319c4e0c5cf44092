"""Swagger UI at /docs and ReDoc at /redoc render from the package's own assets: nothing is
fetched from the internet (every request leaving loopback is refused and recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import VIEWPORT
from tests.support import ServerThread

pytestmark = pytest.mark.browser

# ReDoc 2's "API docs by Redocly" footer image; the page renders without it.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def offline(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page that cannot reach beyond 127.0.0.1, and the addresses it tried."""
    context = browser.new_context(viewport=VIEWPORT)
    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    yield context.new_page(), outside
    context.close()


def test_swagger_ui_redoc_and_the_dashboard_need_no_internet(
    offline: tuple[Page, list[str]], dashboard: ServerThread
) -> None:
    page, outside = offline
    page.goto(f"{dashboard.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("provisioner")
    expect(page.locator(".opblock-summary-path", has_text="/v1/deployments").first).to_be_visible()
    assert outside == []

    page.goto(f"{dashboard.url}/redoc")
    expect(page.locator("h1", has_text="provisioner")).to_be_visible()
    expect(page.get_by_text("/v1/deployments").first).to_be_attached()
    assert set(outside) <= {REDOC_LOGO}

    outside.clear()
    page.goto(f"{dashboard.url}/ui")
    expect(page.get_by_role("heading", name="Releases")).to_be_visible()
    expect(page.locator(".live")).to_contain_text("updated")
    assert outside == []
