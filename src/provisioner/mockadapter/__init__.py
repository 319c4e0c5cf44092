"""A mock Witboost Tech Adapter (API 2.2.0) for demos, CI, end-to-end tests and benchmarks.

Each component steers the mock through `specific.mock` in its descriptor (latency, sync or async,
failures, transient errors, ...; see `behaviour`), and the `/mock/` control API shows what the mock
was asked and what it believes is deployed. Self-contained: imports nothing else of provisioner.
"""

from __future__ import annotations

from provisioner.mockadapter.app import create_mock_app
from provisioner.mockadapter.behaviour import MockBehaviour
from provisioner.mockadapter.server import run_mock_adapter

__all__ = ["MockBehaviour", "create_mock_app", "run_mock_adapter"]
