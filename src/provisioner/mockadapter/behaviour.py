"""How the mock adapter behaves for one component: the `specific.mock` knobs, read and checked.

A component (or, for a DATAPRODUCT_DESCRIPTOR, the data product) steers the mock through
`specific.mock`; every knob is optional and falls back to the server-wide defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from provisioner.mockadapter.errors import InvalidRequestError

# Longest latency accepted: a day. Anything longer is a typo, not a test scenario.
MAX_LATENCY_MS = 86_400_000.0


class Action(StrEnum):
    """A deployment operation the mock performs."""

    PROVISION = "provision"
    UNPROVISION = "unprovision"


class Mode(StrEnum):
    """Sync answers the POST with the result; async answers 202 with a token to poll."""

    SYNC = "sync"
    ASYNC = "async"


class TokenFormat(StrEnum):
    """How a 202 token is sent: a JSON string (application/json) or raw text/plain."""

    JSON = "json"
    TEXT = "text"


class FailTarget(StrEnum):
    """Which action `fail` makes fail."""

    PROVISION = "provision"
    UNPROVISION = "unprovision"
    BOTH = "both"


class FailHow(StrEnum):
    """How a failing action is reported."""

    STATUS = "status"
    BAD_REQUEST = "400"
    SYSTEM_ERROR = "500"


@dataclass(frozen=True, slots=True)
class ServerDefaults:
    """Server-wide behaviour, used for the knobs a component does not set."""

    latency_ms: float = 0.0
    mode: Mode = Mode.SYNC


@dataclass(frozen=True, slots=True)
class MockBehaviour:
    """The effective behaviour of the mock for one component."""

    latency_ms: float
    mode: Mode
    polls: int
    token_format: TokenFormat
    fails: frozenset[Action]
    fail_how: FailHow
    transient_errors: int
    never_finish: bool
    garbage: bool
    invalid: str | None
    poll_errors: int = 0
    content_type: str | None = None
    reset: bool = False
    gate: str | None = None


_FAILS = {
    FailTarget.PROVISION: frozenset({Action.PROVISION}),
    FailTarget.UNPROVISION: frozenset({Action.UNPROVISION}),
    FailTarget.BOTH: frozenset(Action),
}
_KNOWN_KNOBS = frozenset(
    {
        "latencyMs",
        "mode",
        "polls",
        "tokenFormat",
        "fail",
        "failHow",
        "transientErrors",
        "neverFinish",
        "garbage",
        "invalid",
        "pollErrors",
        "contentType",
        "reset",
        "gate",
    }
)
_E = TypeVar("_E", bound=StrEnum)
_D = TypeVar("_D")


def parse_behaviour(component: Mapping[str, Any], defaults: ServerDefaults) -> MockBehaviour:
    """Read `specific.mock` of a component or data product; InvalidRequestError on nonsense."""
    knobs = _Knobs(_mock_section(component))
    fail = knobs.choice("fail", FailTarget, None)
    behaviour = MockBehaviour(
        latency_ms=knobs.latency("latencyMs", defaults.latency_ms),
        mode=knobs.choice("mode", Mode, defaults.mode),
        polls=knobs.count("polls", 1),
        token_format=knobs.choice("tokenFormat", TokenFormat, TokenFormat.JSON),
        fails=_FAILS[fail] if fail is not None else frozenset(),
        fail_how=knobs.choice("failHow", FailHow, FailHow.STATUS),
        transient_errors=knobs.count("transientErrors", 0),
        never_finish=knobs.flag("neverFinish"),
        garbage=knobs.flag("garbage"),
        invalid=knobs.text("invalid"),
        poll_errors=knobs.count("pollErrors", 0),
        content_type=knobs.text("contentType"),
        reset=knobs.flag("reset"),
        gate=knobs.text("gate"),
    )
    if behaviour.never_finish and behaviour.mode is Mode.SYNC:
        knobs.problems.append("specific.mock.neverFinish: needs mode async")
    if behaviour.reset and behaviour.mode is Mode.ASYNC:
        knobs.problems.append("specific.mock.reset: needs mode sync")
    if behaviour.gate is not None and not _is_gate_name(behaviour.gate):
        knobs.problems.append("specific.mock.gate: must be a non-empty name without '/'")
    if knobs.problems:
        raise InvalidRequestError(knobs.problems, user_message="specific.mock is invalid")
    return behaviour


def _mock_section(component: Mapping[str, Any]) -> object:
    specific = component.get("specific")
    if not isinstance(specific, Mapping):
        return None
    return specific.get("mock")


class _Knobs:
    """Reads the knobs of one `specific.mock` mapping, collecting every problem found."""

    def __init__(self, section: object) -> None:
        self.problems: list[str] = []
        self._values: Mapping[str, Any] = {}
        if isinstance(section, Mapping):
            self._values = section
            unknown = sorted(str(key) for key in section if key not in _KNOWN_KNOBS)
            self.problems.extend(f"specific.mock.{key}: unknown knob" for key in unknown)
        elif section is not None:
            self.problems.append("specific.mock: must be a mapping")

    def _problem(self, key: str, message: str) -> None:
        self.problems.append(f"specific.mock.{key}: {message}")

    def latency(self, key: str, default: float) -> float:
        value = self._values.get(key)
        if value is None:
            return default
        # Bounds first: NaN fails them, and isfinite() would overflow on a huge YAML int.
        if _is_number(value) and 0 <= value <= MAX_LATENCY_MS:
            return float(value)
        self._problem(key, f"must be a number of milliseconds from 0 to {MAX_LATENCY_MS:.0f}")
        return default

    def count(self, key: str, default: int) -> int:
        value = self._values.get(key)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        self._problem(key, "must be a whole number >= 0")
        return default

    def flag(self, key: str) -> bool:
        value = self._values.get(key)
        if value is None or isinstance(value, bool):
            return bool(value)
        self._problem(key, "must be true or false")
        return False

    def text(self, key: str) -> str | None:
        value = self._values.get(key)
        if value is None or isinstance(value, str):
            return value
        self._problem(key, "must be a string")
        return None

    def choice(self, key: str, enum: type[_E], default: _D) -> _E | _D:
        value = self._values.get(key)
        if value is None:
            return default
        # YAML reads `failHow: 400` as an int; the knob means the same as "400".
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if text is not None and text in enum._value2member_map_:
            return enum(text)
        self._problem(key, f"must be one of {', '.join(member.value for member in enum)}")
        return default


def _is_gate_name(name: str) -> bool:
    """A gate is opened at /mock/gates/{name}: the name must fit in one path segment."""
    return bool(name) and "/" not in name and name.isprintable()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
