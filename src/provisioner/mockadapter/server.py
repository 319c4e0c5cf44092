"""Serve the mock adapter over HTTP with uvicorn."""

from __future__ import annotations

import uvicorn

from provisioner.mockadapter.app import create_mock_app


def run_mock_adapter(
    *,
    host: str,
    port: int,
    default_latency_ms: float = 0.0,
    default_mode: str = "sync",
    marketplace_secret: str | None = None,
) -> None:
    """Serve the mock Tech Adapter until interrupted (one process, one event loop)."""
    app = create_mock_app(
        default_latency_ms=default_latency_ms,
        default_mode=default_mode,
        marketplace_secret=marketplace_secret,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="warning",
    )
