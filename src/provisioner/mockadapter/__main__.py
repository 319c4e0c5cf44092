"""`python -m provisioner.mockadapter`: serve the mock Tech Adapter (demos, CI)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from provisioner.mockadapter.server import run_mock_adapter


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m provisioner.mockadapter",
        description="A mock Witboost Tech Adapter (API 2.2.0) steered by specific.mock.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="default operation latency")
    parser.add_argument("--mode", choices=["sync", "async"], default="sync", help="default mode")
    parser.add_argument(
        "--marketplace-secret", help="check the HMAC signature of Market Plane deliveries"
    )
    args = parser.parse_args(argv)
    run_mock_adapter(
        host=args.host,
        port=args.port,
        default_latency_ms=args.latency_ms,
        default_mode=args.mode,
        marketplace_secret=args.marketplace_secret,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
