"""A Market Plane receiver: records the release events provisioner publishes, as a webhook would.

Each delivery is a JSON body signed in `X-Provisioner-Signature: sha256=<hex HMAC-SHA256 of the
body>`. With a secret the receiver checks the signature (401 when it is missing or wrong); without
one it records whatever arrives. `fail(count, status)` makes the next deliveries fail, so that
tests can watch the publisher retry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from provisioner.mockadapter import answers
from provisioner.mockadapter.answers import Answer
from provisioner.mockadapter.errors import InvalidRequestError

SIGNATURE_HEADER = "x-provisioner-signature"
_SIGNATURE_PREFIX = "sha256="
# Deliveries kept (accepted and rejected each): a benchmark publishes one event per release.
KEPT = 10_000


class MarketplaceReceiver:
    """Records each delivery; accepted ones are `events`, refused ones `rejected`."""

    def __init__(self, *, secret: str | None = None) -> None:
        self._secret = secret.encode() if secret is not None else None
        self.events: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.rejected: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self._next_seq = 1
        self._failures_left = 0
        self._failure_status = 503

    def receive(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """One delivery: fail if asked to, else check its signature and JSON, and record it."""
        entry: dict[str, Any] = {
            "seq": self._next_seq,
            "receivedAt": time.time(),
            "headers": dict(headers),
            "signature": "unchecked",
        }
        self._next_seq += 1
        if self._failures_left > 0:
            self._failures_left -= 1
            return self._reject(entry, body, self._failure_status, "failing as asked")
        entry["signature"] = verdict = self._signature_verdict(body, headers.get(SIGNATURE_HEADER))
        if verdict not in ("valid", "unchecked"):
            return self._reject(entry, body, 401, f"signature {verdict}")
        try:
            entry["body"] = json.loads(body)
        except ValueError:
            return self._reject(entry, body, 400, "the body is not JSON")
        self.events.append(entry)
        return answers.json_answer({"accepted": True, "seq": entry["seq"]}, 202)

    def _signature_verdict(self, body: bytes, header: str | None) -> str:
        if self._secret is None:
            return "unchecked"
        if header is None:
            return "missing"
        if not header.startswith(_SIGNATURE_PREFIX):
            return "malformed"
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        given = header.removeprefix(_SIGNATURE_PREFIX).strip().lower()
        # As bytes: compare_digest refuses str with non-ASCII characters, which a header may hold.
        return "valid" if hmac.compare_digest(expected.encode(), given.encode()) else "wrong"

    def _reject(self, entry: dict[str, Any], body: bytes, status: int, reason: str) -> Answer:
        entry.update(httpStatus=status, reason=reason, body=body.decode(errors="replace"))
        self.rejected.append(entry)
        problem = {"title": "Delivery refused by the mock Market Plane", "status": status}
        return answers.Answer(
            status,
            json.dumps({**problem, "detail": reason}).encode(),
            "application/problem+json",
        )

    def fail(self, body: bytes) -> Answer:
        """`{"count": N, "status": S}`: the next N deliveries are answered S (default 503)."""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        fields = payload if isinstance(payload, dict) else {}
        count = _whole(fields.get("count"), 0, 1_000_000)
        status = _whole(fields.get("status", 503), 400, 599)
        problems = []
        if count is None:
            problems.append("count: is required and must be a whole number from 0")
        if status is None:
            problems.append("status: must be an HTTP error status from 400 to 599")
        if count is None or status is None:
            raise InvalidRequestError(problems, user_message="The failure request is invalid")
        self._failures_left, self._failure_status = count, status
        return answers.json_answer({"count": count, "status": status})

    def to_json(self) -> dict[str, Any]:
        """What the control API shows: accepted events, refused deliveries, failures still due."""
        return {
            "events": list(self.events),
            "rejected": list(self.rejected),
            "failuresLeft": self._failures_left,
        }

    def clear(self) -> None:
        """Forget the recorded deliveries (failures still due stay due)."""
        self.events.clear()
        self.rejected.clear()


def _whole(value: object, low: int, high: int) -> int | None:
    """The value if it is a whole number from low to high, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None
