"""The browser tier: the dashboard in Debian's chromium, driven by Playwright (its own browser
download is not used), against the real service on loopback with the mock Tech Adapter.

One browser and one page for the whole tier (a test starts by navigating); services are
started once per tier. Set ``PROVISIONER_TEST_CHROMIUM`` to use another chromium binary, and
``PROVISIONER_SCREENSHOTS`` to a folder to keep the screenshots (``make screenshots`` writes
the README's into ``docs/``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from provisioner.api.app import create_app
from provisioner.auth.tokens import create_token
from provisioner.settings import Settings
from provisioner.store.database import Database
from tests.browser.wiretap import DropFirstStream, RequestLog
from tests.conftest import IN_CI
from tests.support import ServerThread, write_registry

# Flags for running headless as root in a container, with nothing phoning home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED")
# Adapters with realistic names (all the mock adapter), for the screenshots.
REALISTIC_ADAPTERS = [
    "urn:dmb:itm:aws-s3-storage-provisioner:0",
    "urn:dmb:itm:airbyte-workload-provisioner:0",
    "urn:dmb:itm:dbt-workload-provisioner:0",
    "urn:dmb:itm:snowflake-outputport-provisioner:0",
    "urn:dmb:itm:airflow-workload-provisioner:0",
]
# The tokens of the service with authentication on: name -> scopes.
TOKENS = {"reader": ("read",), "operator": ("deploy:*",)}


@pytest.fixture(scope="package")
def chromium() -> str:
    """Debian's chromium; skipped without it (a failure under CI)."""
    path = os.environ.get("PROVISIONER_TEST_CHROMIUM") or shutil.which("chromium")
    if path is None:
        message = "no chromium: apt-get install -y chromium (or set PROVISIONER_TEST_CHROMIUM)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="package")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    """The tier's page, and what went wrong in it (uncaught errors, console errors)."""

    page: Page
    errors: list[str]


@pytest.fixture(scope="package")
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))

    def console(message: ConsoleMessage) -> None:
        # A refused request is logged by the browser itself; the dashboard handles those.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")

    page.on("console", console)
    yield Tab(page, errors)
    context.close()


@pytest.fixture
def page(tab: Tab) -> Iterator[Page]:
    """The shared page, blank; the test fails if the dashboard raised an error meanwhile."""
    tab.page.goto("about:blank")
    tab.errors.clear()
    yield tab.page
    assert tab.errors == []


def _service(
    tmp: Path,
    mock_adapter: str,
    wrap: Callable[[Any], Any] = lambda app: app,
    **overrides: Any,
) -> Any:
    extra = "".join(
        f"  - infrastructureTemplateId: {t}\n    url: {mock_adapter}\n" for t in REALISTIC_ADAPTERS
    )
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'provisioner.db'}",
        config=write_registry(tmp, mock_adapter, extra=extra),
        replica_id=f"browser-{uuid.uuid4().hex[:8]}",
        poll_initial_seconds=0.02,
        poll_max_seconds=0.2,
        shutdown_grace_seconds=1.0,
        log_level="WARNING",
        **overrides,
    )
    app = create_app(settings)
    server = ServerThread(wrap(app)).start()
    return server, settings


@pytest.fixture(scope="package")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory, mock_adapter: str
) -> Iterator[ServerThread]:
    """The service, authentication off (on loopback)."""
    server, _ = _service(tmp_path_factory.mktemp("dashboard"), mock_adapter)
    yield server
    server.stop()


@pytest.fixture(scope="package")
def streaming(
    tmp_path_factory: pytest.TempPathFactory, mock_adapter: str
) -> Iterator[tuple[ServerThread, DropFirstStream]]:
    """The service, whose first event stream drops after three events (the client must
    resume from the last one)."""
    holder: dict[str, DropFirstStream] = {}

    def wrap(app: Any) -> DropFirstStream:
        holder["stream"] = DropFirstStream(app, events=3)
        return holder["stream"]

    server, _ = _service(tmp_path_factory.mktemp("streaming"), mock_adapter, wrap)
    yield server, holder["stream"]
    server.stop()


@dataclass
class Gated:
    """The service with authentication on: its URL, the secrets of TOKENS by name, and what
    each request carried."""

    server: ServerThread
    secrets: dict[str, str]
    requests: RequestLog


async def _tokens(database_url: str) -> dict[str, str]:
    database = Database(database_url)
    try:
        return {
            name: (await create_token(database, name, scopes)).secret
            for name, scopes in TOKENS.items()
        }
    finally:
        await database.dispose()


@pytest.fixture(scope="package")
def gated(tmp_path_factory: pytest.TempPathFactory, mock_adapter: str) -> Iterator[Gated]:
    """The service with authentication on and the API tokens of TOKENS."""
    holder: dict[str, RequestLog] = {}

    def wrap(app: Any) -> RequestLog:
        holder["log"] = RequestLog(app)
        return holder["log"]

    server, settings = _service(tmp_path_factory.mktemp("gated"), mock_adapter, wrap, auth="on")
    # Playwright's sync API runs an event loop in this thread: make them in another.
    with ThreadPoolExecutor(1) as pool:
        secrets = pool.submit(asyncio.run, _tokens(settings.database_url)).result()
    yield Gated(server, secrets, holder["log"])
    server.stop()


@pytest.fixture
def unit_prefix(request: pytest.FixtureRequest) -> str:
    """A deployment unit id prefix unique to this test."""
    return f"urn:dmb:dp:ui:{request.node.name[5:30].replace('_', '-')}-{uuid.uuid4().hex[:6]}"


# --- the API, synchronously (the browser tests are sync: Playwright's sync API) ----------


class Api:
    """The service's REST API for a test's set-up and checks."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, timeout=30, headers=headers)

    def deploy(self, document: dict[str, Any]) -> str:
        response = self.http.post("/v1/deployments", json={"descriptor": document})
        assert response.status_code == 202, response.text
        operation_id: str = response.json()["id"]
        return operation_id

    def operation(self, operation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"/v1/operations/{operation_id}").json()
        return body

    def ended(self, operation_id: str, *, deadline_seconds: float = 30) -> dict[str, Any]:
        result: dict[str, Any] = wait_for(
            lambda: (op := self.operation(operation_id))["status"] in ENDED and op,
            deadline_seconds=deadline_seconds,
        )
        return result

    def cancel_if_active(self, operation_id: str) -> None:
        if self.operation(operation_id)["status"] not in ENDED:
            self.http.post(f"/v1/operations/{operation_id}/cancel")
            self.ended(operation_id)


def wait_for(check: Callable[[], Any], *, deadline_seconds: float = 20) -> Any:
    """Call ``check`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_seconds} s (last: {value!r})")
        time.sleep(0.05)


@pytest.fixture
def api(dashboard: ServerThread) -> Iterator[Api]:
    client = Api(dashboard.url)
    yield client
    client.http.close()


# --- screenshots ------------------------------------------------------------------------

# Decodes the PNG in the browser itself and counts its colours (no image library needed).
_COLOURS = """async (data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const image = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(image.width, image.height);
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = new Uint32Array(context.getImageData(0, 0, image.width, image.height).data.buffer);
  const counts = new Map();
  for (const pixel of pixels) counts.set(pixel, (counts.get(pixel) ?? 0) + 1);
  return { colours: counts.size, commonest: Math.max(...counts.values()) / pixels.length };
}"""


@pytest.fixture(scope="package")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("PROVISIONER_SCREENSHOTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def shoot(page: Page, screenshots: Path) -> Callable[..., Path]:
    """Take a screenshot named ``name`` and check that it is not blank: many colours, and no
    single colour covering nearly all of it."""

    def take(name: str, *, full_page: bool = False, height: int | None = None) -> Path:
        """``height``: only the top of the page, that many pixels."""
        path = screenshots / f"{name}.png"
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
        png = page.screenshot(path=path, full_page=full_page, clip=clip, animations="disabled")
        seen = page.evaluate(_COLOURS, base64.b64encode(png).decode())
        assert seen["colours"] > 64, (name, seen)
        assert seen["commonest"] < 0.95, (name, seen)
        return path

    return take
