"""Operation ids: UUIDv7 (RFC 9562), ordered by creation time and monotonic in a process, so
that listing operations by id lists them in submission order."""

from __future__ import annotations

import secrets
import threading
import time
import uuid


class _OperationIds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms, self._counter = ms, secrets.randbits(11)
            else:
                self._counter += 1
                if self._counter >= 1 << 12:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms, self._counter = self._last_ms + 1, 0
            value = (
                (self._last_ms << 80)
                | (0x7 << 76)
                | (self._counter << 64)
                | (0b10 << 62)
                | secrets.randbits(62)
            )
        return str(uuid.UUID(int=value))


new_operation_id = _OperationIds().next
