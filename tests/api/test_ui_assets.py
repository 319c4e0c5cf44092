"""The dashboard's page, Swagger UI and ReDoc are served from the package's own assets, with
their links right behind a path prefix; the browser tier (tests/browser) runs them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from provisioner.api.app import create_app
from provisioner.settings import Settings

# What each page loads: src and href attributes.
LINKS = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture
async def http(sqlite_url: str, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, in process: these routes need neither the database nor the worker."""
    root = getattr(request, "param", "")
    transport = httpx.ASGITransport(
        app=create_app(Settings(database_url=sqlite_url)), root_path=root
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


async def test_the_dashboard_page_only_runs_its_own_scripts(http: httpx.AsyncClient) -> None:
    """/ui is the dashboard's page, under a policy that allows scripts, styles and requests
    from this origin only; / leads there."""
    page = await http.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    for rule in (
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert rule in policy
    assert "{{root}}" not in page.text
    assert 'src="/static/ui/app.js"' in page.text
    home = await http.get("/")
    assert home.status_code == 307
    assert home.headers["location"] == "/ui"


@pytest.mark.parametrize("path", ["/ui", "/docs", "/redoc"])
async def test_pages_load_nothing_from_elsewhere_and_everything_they_load_is_served(
    http: httpx.AsyncClient, path: str
) -> None:
    page = await http.get(path)
    assert page.status_code == 200
    assert "https://" not in page.text
    assert "http://" not in page.text
    links = LINKS.findall(page.text)
    assert links
    for link in links:
        if link.startswith("/"):
            asset = await http.get(link)
            assert asset.status_code == 200, link


async def test_assets_are_compressed_revalidated_and_typed(http: httpx.AsyncClient) -> None:
    """Swagger UI's 1.7 MB script goes compressed; the browser revalidates assets (a 304)
    rather than keeping stale ones after an upgrade; modules are served as JavaScript."""
    path = "/static/vendor/swagger-ui/swagger-ui-bundle.js"
    bundle = await http.get(path, headers={"Accept-Encoding": "gzip"})
    assert bundle.status_code == 200
    assert bundle.headers["content-encoding"] == "gzip"
    assert bundle.num_bytes_downloaded < len(bundle.content) / 2
    assert bundle.headers["cache-control"] == "no-cache"
    again = await http.get(path, headers={"If-None-Match": bundle.headers["etag"]})
    assert again.status_code == 304
    for module in ("/static/ui/app.js", "/static/vendor/dagre/dagre.esm.js"):
        answer = await http.get(module)
        assert answer.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert (await http.get("/static/..%2Froutes/ui.py")).status_code == 404


@pytest.mark.parametrize("http", ["/provisioner"], indirect=True)
async def test_behind_a_path_prefix_every_link_carries_it(http: httpx.AsyncClient) -> None:
    page = (await http.get("/ui")).text
    assert 'content="/provisioner"' in page
    assert 'src="/provisioner/static/ui/app.js"' in page
    docs = (await http.get("/docs")).text
    assert "'/provisioner/openapi.json'" in docs
    assert '"/provisioner/static/vendor/swagger-ui/swagger-ui-bundle.js"' in docs
    redoc = (await http.get("/redoc")).text
    assert 'spec-url="/provisioner/openapi.json"' in redoc
    assert (await http.get("/")).headers["location"] == "/provisioner/ui"
