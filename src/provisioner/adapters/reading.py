"""Reading Tech Adapters' answers as untrusted input: strict JSON whose every value can be kept.

An answer's data is stored (task info, logs, errors) in JSON columns on SQLite and PostgreSQL,
sent back to adapters and shown by the API. ``json.loads`` accepts what none of those can hold:
``NaN`` and ``Infinity``; ``1e400``, which becomes ``inf`` without calling ``parse_constant``;
``"\\u0000"``, a NUL character that PostgreSQL cannot hold as text; ``"\\ud800"``, a lone
surrogate that no UTF-8 encoder writes; and nesting bounded only by the interpreter's recursion
limit. ``load_answer`` refuses all of them, naming where the value is, so that a bad answer fails
its own task with a readable reason instead of failing the write of every task beside it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from provisioner.domain.documents import MAX_DEPTH

_SURROGATE = re.compile("[\ud800-\udfff]")
# The escapes of NUL and of surrogates (halves of a pair, or alone).
_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_SHOWN_NUMBER = 40  # characters of a refused number literal quoted in the reason
_SHOWN_KEY = 60  # characters of each key in a reported path


class UnreadableAnswerError(ValueError):
    """The body is not JSON at all (or not the JSON expected): a proxy page, a truncated body."""


class UnstorableAnswerError(ValueError):
    """Well-formed JSON holding a value that cannot be stored, sent on or shown."""


class _BadNumber:
    """What the decoder makes of a number no JSON column holds, reported once its path is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def load_answer(content: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON data of an answer body, or ``UnreadableAnswerError`` / ``UnstorableAnswerError``.

    The data is walked, to name where the problem is, only when its text may hold one (a number
    that is not finite, an escape that may be a NUL or a surrogate, more containers than the
    depth allowed): an ordinary answer costs ``json.loads`` and a few scans of its text.
    """
    try:
        # JSON between systems is UTF-8 (RFC 8259); a byte order mark is tolerated.
        text = content.decode("utf-8-sig")
        try:
            data = _FINITE.decode(text)
            suspect = text.count("{") + text.count("[") > max_depth or _ESCAPE.search(text)
        except _NotFiniteError:
            data, suspect = _MARKING.decode(text), True
    except RecursionError:
        raise UnstorableAnswerError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int of 4,300+ digits
        raise UnreadableAnswerError((str(exc).splitlines() or ["not JSON"])[0]) from None
    problem = _problem(data, [], 0, max_depth) if suspect else None
    if problem is not None:
        raise UnstorableAnswerError(problem)
    return data


class _NotFiniteError(Exception):
    """Raised by the first decoding at the first number that is not finite."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFiniteError
    return value


def _not_finite(_name: str) -> float:
    raise _NotFiniteError


def _marked(text: str) -> float | _BadNumber:
    value = float(text)
    if math.isfinite(value):
        return value
    return _BadNumber(f"the number {text[:_SHOWN_NUMBER]} is out of range")


def _marked_constant(name: str) -> _BadNumber:
    return _BadNumber(f"{name} is not a JSON number")


# The first decoding stops at a number no JSON column holds; the second, only then, marks each
# such number so that the walk can say where it is.
_FINITE = json.JSONDecoder(parse_float=_finite, parse_constant=_not_finite)
_MARKING = json.JSONDecoder(parse_float=_marked, parse_constant=_marked_constant)


def _problem(value: Any, path: list[str | int], depth: int, max_depth: int) -> str | None:
    """The first value that cannot be kept, as ``"<path>: <what>"``; None if there is none.

    Recursive, but never deeper than ``max_depth`` + 1 frames: deeper nesting is the problem.
    """
    if isinstance(value, str):
        return _text_problem(value, path)
    if isinstance(value, _BadNumber):
        return f"{_where(path)}: {value.reason}"
    if not isinstance(value, dict | list):
        return None
    if depth >= max_depth:
        return f"{_where(path)}: nested deeper than {max_depth} levels"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        path.append(key)
        problem = _text_problem(key, path, of_key=True) if isinstance(key, str) else None
        problem = problem or _problem(item, path, depth + 1, max_depth)
        path.pop()
        if problem is not None:
            return problem
    return None


def _text_problem(text: str, path: list[str | int], *, of_key: bool = False) -> str | None:
    what = "the key" if of_key else "the text"
    if "\x00" in text:
        return f"{_where(path)}: {what} holds a NUL character (\\u0000)"
    if _SURROGATE.search(text):
        return f"{_where(path)}: {what} holds a lone surrogate, which is not Unicode text"
    return None


def _where(path: list[str | int]) -> str:
    """``info.publicInfo.size``, ``logs[0].message``; printable, each key bounded."""
    where = ""
    for part in path:
        if isinstance(part, int):
            where += f"[{part}]"
            continue
        key = "".join(ch if ch.isprintable() else "?" for ch in part[:_SHOWN_KEY])
        where += f".{key}" if where else key
    return where or "the answer"


@dataclass(frozen=True, slots=True)
class Answer:
    """An adapter's answer, its whole body read (within the size limit)."""

    status_code: int
    content: bytes
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class AnswerTooLargeError(Exception):
    """The body is longer than the limit; ``status_code`` is what the adapter answered."""

    def __init__(self, status_code: int, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.status_code = status_code
        self.limit = limit


async def read_answer(response: httpx.Response, *, limit: int) -> Answer:
    """Read a streamed response's body, refusing more than ``limit`` bytes (decoded: a gzip
    bomb counts at its full size) without holding more than that in memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLargeError(response.status_code, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLargeError(response.status_code, limit)
        chunks.append(chunk)
    return Answer(response.status_code, b"".join(chunks), response.headers.get("content-type"))
