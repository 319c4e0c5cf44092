"""Crash points for fault-injection tests: the process kills itself at a named boundary.

Set ``PROVISIONER_FAILPOINTS`` to a comma-separated list of ``point=component-id``; when the
engine reaches that point for that component, the process sends itself SIGKILL, exactly as if
it had been killed there. The points are the boundaries that matter for recovery:

- ``before-call``: the task's start is recorded, its adapter call not yet sent;
- ``after-call``: the adapter answered (a result or a token), nothing of it recorded yet;
- ``while-polling``: the adapter's token is recorded and polling has begun;
- ``before-delivery`` (given a deployment unit id): a Market Plane event of that unit is
  published and claimed for delivery, not yet sent.

Unset (always, in production), a check is one lookup in an empty mapping.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset({"before-call", "after-call", "while-polling", "before-delivery"})


class Failpoints:
    """The crash points that are armed, by point name."""

    def __init__(self, spec: str | None = None) -> None:
        self._armed: dict[str, set[str]] = {}
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            point, _, component_id = item.strip().partition("=")
            if point not in POINTS or not component_id:
                raise ValueError(f"unknown failpoint {item!r}; expected one of {sorted(POINTS)}")
            self._armed.setdefault(point, set()).add(component_id)

    def check(self, point: str, component_id: str) -> None:
        """Kill this process if ``point`` is armed for ``component_id``."""
        if component_id in self._armed.get(point, ()):
            os.kill(os.getpid(), signal.SIGKILL)
