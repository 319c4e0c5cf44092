"""Computational governance: Rego policies checked on every request, in-process.

``PROVISIONER_POLICIES`` names a directory of ``.rego`` files. In each package under
``provisioner``, ``deny`` messages refuse the request and ``warn`` messages are kept with the
operation. The input is ``{action, environment, descriptor, components, removeData,
principal}``. Policies are read and compiled once, at start, and a policy that cannot be used
stops the service with its file and line (``sources``, ``compiler``); they are evaluated with
regopy, the Python binding of Microsoft's rego-cpp, on one thread of their own (``engine``).
"""

from __future__ import annotations

from provisioner.policies.engine import PolicyEngine, PolicyVerdict

__all__ = ["PolicyEngine", "PolicyVerdict"]
