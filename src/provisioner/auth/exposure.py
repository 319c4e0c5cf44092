"""Where a service may listen without authentication: loopback addresses only."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (bracketed or not). Names are not resolved: a name
    other than ``localhost`` may point anywhere. ``0.0.0.0`` and ``::`` are every address."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """Whether an http(s) URL points at a loopback address."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or "")


def exposure_problem(*, auth: str, host: str) -> str | None:
    """Why the service may not start with these settings (None: it may)."""
    if auth == "off" and not is_loopback_host(host):
        return (
            f"PROVISIONER_AUTH=off is allowed only on a loopback address, and the service "
            f"would listen on {host!r}: turn authentication on, or listen on 127.0.0.1"
        )
    return None
