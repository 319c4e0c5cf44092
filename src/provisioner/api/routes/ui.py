"""The dashboard at ``/ui`` and the API documentation at ``/docs`` (Swagger UI) and ``/redoc``
(ReDoc), served from assets shipped inside the package (``api/static``): nothing is loaded
from the internet, so they work on an air-gapped network, and there is no build step.

The dashboard is one HTML page with ES modules (``static/ui``) that calls the REST API from
the browser; THIRD_PARTY.md lists the vendored files (``static/vendor``).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from provisioner.api.security import OPEN_ACCESS

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = "/static"
SWAGGER = f"{ASSETS}/vendor/swagger-ui"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

# The dashboard's page runs only its own scripts and styles and talks only to this origin, so
# that text an adapter wrote (errors, logs, info), even if it slipped past escaping, can
# neither run code nor send anything elsewhere.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

# The pages and their assets need no token: the API calls they make do.
router = APIRouter(include_in_schema=False, dependencies=[OPEN_ACCESS])


class _Assets(StaticFiles):
    """Static files that the browser revalidates (a cheap 304) instead of guessing how long
    they stay fresh: after an upgrade the dashboard's modules are the new ones."""

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_assets(app: FastAPI) -> None:
    """Serve ``api/static`` at ``/static`` (compressed: Swagger UI's script is 1.7 MB) and
    keep the dashboard's page, read once here rather than on a request."""
    app.mount(ASSETS, GZipMiddleware(_Assets(directory=STATIC), minimum_size=1024), name="static")
    app.state.dashboard_page = (STATIC / "ui" / "index.html").read_text(encoding="utf-8")


def _root(request: Request) -> str:
    """The path prefix the service is mounted under behind a proxy (``root_path``)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_root(request)}/ui")


@router.get("/ui")
async def dashboard(request: Request) -> HTMLResponse:
    page: str = request.app.state.dashboard_page
    return HTMLResponse(
        page.replace("{{root}}", html.escape(_root(request), quote=True)),
        headers=DASHBOARD_HEADERS,
    )


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=root + OAUTH2_REDIRECT,
        swagger_js_url=f"{root}{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS}/vendor/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
        with_google_fonts=False,
    )
