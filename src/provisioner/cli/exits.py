"""Exit codes of the ``provisioner`` command, the same for every command, and the error that
carries one to the top.

A client command ends with one of the first six; ``serve`` refuses to start with one of its
own for each cause, so that a supervisor (or a person) can tell them apart without reading.
"""

from __future__ import annotations

import sys
from enum import IntEnum


class Exit(IntEnum):
    """What the process's exit status means (README, "Exit codes")."""

    OK = 0
    FAILED = (
        1  # the operation failed or was cancelled; validate: invalid; status --check: not DEPLOYED
    )
    REFUSED = 2  # the request was refused as invalid (4xx but 401/403/409), or bad arguments
    BUSY = 3  # 409: another operation is active there, or the operation's state forbids it
    TIMEOUT = 4  # --timeout passed before the operation ended (it goes on)
    UNREACHABLE = 5  # cannot reach the server, it cannot answer (5xx), or not authorised (401/403)
    # serve: why it did not start
    BAD_SETTINGS = 10
    BAD_REGISTRY = 11
    BAD_POLICY = 12
    DATABASE_UNREACHABLE = 13
    PORT_IN_USE = 14
    AUTH_OFF_IN_PUBLIC = 15
    REPLICA_ID_IN_USE = 16
    START_FAILED = 17  # past the checks, the service itself failed to start (its log says why)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class CommandError(Exception):
    """A command ends here: ``message`` (and each line of ``details``) on stderr, exit ``code``.

    ``problem`` is the server's problem details, when it refused the request.
    """

    def __init__(
        self,
        code: Exit,
        message: str,
        *details: str,
        problem: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.problem = problem or {}

    def report(self) -> None:
        print(self.message, file=sys.stderr)
        for line in self.details:
            print(f"  {line}", file=sys.stderr)
