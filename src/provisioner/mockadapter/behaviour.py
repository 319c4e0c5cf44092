"""How the mock adapter behaves for one component: the `specific.mock` knobs, read and checked.

A component (or, for a DATAPRODUCT_DESCRIPTOR, the data product) steers the mock through
`specific.mock`; every knob is optional and falls back to the server-wide defaults. The knobs
steer provisions (latency, mode, failures, the info answered), validations (`invalid`,
`validation*`) and ACL updates (`acl*`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, NamedTuple

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


class CallFailure(StrEnum):
    """How a call that `validationFail` makes fail is answered: 400 or 500, never a status."""

    BAD_REQUEST = "400"
    SYSTEM_ERROR = "500"


class ValidationOutcome(StrEnum):
    """The final status of a /v2/validate task: COMPLETED with a result, or FAILED without."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ServerDefaults:
    """Server-wide behaviour, used for the knobs a component does not set."""

    latency_ms: float = 0.0
    mode: Mode = Mode.SYNC


@dataclass(frozen=True, slots=True)
class MockBehaviour:
    """The effective behaviour of the mock for one component (the defaults: a plain adapter)."""

    latency_ms: float = 0.0
    mode: Mode = Mode.SYNC
    polls: int = 1
    token_format: TokenFormat = TokenFormat.JSON
    fails: frozenset[Action] = frozenset()
    fail_how: FailHow = FailHow.STATUS
    transient_errors: int = 0
    never_finish: bool = False
    garbage: bool = False
    # Validation: the reasons /v1/validate and /v2/validate give (none: valid).
    invalid: tuple[str, ...] = ()
    poll_errors: int = 0
    content_type: str | None = None
    reset: bool = False
    # Echoed into a COMPLETED provision's info, over the mock's own fields.
    public_info: Mapping[str, Any] | None = None
    private_info: Mapping[str, Any] | None = None
    # publicInfo as raw JSON text, sent as written (values no serializer writes: 1e400).
    public_info_json: str | None = None
    validation_latency_ms: float = 0.0
    validation_fail: CallFailure | None = None
    validation_polls: int = 0
    validation_status: ValidationOutcome = ValidationOutcome.COMPLETED
    acl_fail: bool = False
    acl_mode: Mode = Mode.SYNC
    acl_gate: str | None = None  # updateacl held until the test opens the gate of this name
    gate: str | None = None  # held until the test opens the gate of this name


def parse_behaviour(component: Mapping[str, Any], defaults: ServerDefaults) -> MockBehaviour:
    """Read `specific.mock` of a component or data product; InvalidRequestError on nonsense.

    It runs on every provision, so it costs what the component sets: a component without
    `specific.mock` gets the server's default behaviour as is.
    """
    section = _mock_section(component)
    if section is None:
        return _default_behaviour(defaults)
    if not isinstance(section, Mapping):
        raise _invalid(["specific.mock: must be a mapping"])
    problems: list[str] = []
    values: dict[str, Any] = {"latency_ms": defaults.latency_ms, "mode": defaults.mode}
    for key, raw in section.items():
        knob = _KNOBS.get(key) if isinstance(key, str) else None
        if knob is None:
            problems.append(f"specific.mock.{key}: unknown knob")
        elif raw is not None:  # a knob set to null keeps its default
            value = knob.read(raw)
            if value is _BAD:
                problems.append(f"specific.mock.{key}: {knob.expected}")
            else:
                values[knob.field] = value
    behaviour = MockBehaviour(**values)
    if behaviour.never_finish and behaviour.mode is Mode.SYNC:
        problems.append("specific.mock.neverFinish: needs mode async")
    if behaviour.reset and behaviour.mode is Mode.ASYNC:
        problems.append("specific.mock.reset: needs mode sync")
    if behaviour.gate is not None and not _is_gate_name(behaviour.gate):
        problems.append("specific.mock.gate: must be a non-empty name without '/'")
    if behaviour.acl_gate is not None and not _is_gate_name(behaviour.acl_gate):
        problems.append("specific.mock.aclGate: must be a non-empty name without '/'")
    if problems:
        raise _invalid(problems)
    return behaviour


@cache
def _default_behaviour(defaults: ServerDefaults) -> MockBehaviour:
    return MockBehaviour(latency_ms=defaults.latency_ms, mode=defaults.mode)


def _mock_section(component: Mapping[str, Any]) -> object:
    specific = component.get("specific")
    if not isinstance(specific, Mapping):
        return None
    return specific.get("mock")


def _invalid(problems: list[str]) -> InvalidRequestError:
    return InvalidRequestError(problems, user_message="specific.mock is invalid")


class _Bad:
    """The reading of a knob whose value makes no sense."""


_BAD = _Bad()


class _Knob(NamedTuple):
    """One `specific.mock` knob: the MockBehaviour field it sets and how its value is read."""

    field: str
    read: Callable[[object], object]
    expected: str


def _latency(value: object) -> object:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return _BAD
    # Bounds first: NaN fails them, and isfinite() would overflow on a huge YAML int.
    return float(value) if 0 <= value <= MAX_LATENCY_MS else _BAD


def _count(value: object) -> object:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else _BAD


def _flag(value: object) -> object:
    return value if isinstance(value, bool) else _BAD


def _text(value: object) -> object:
    return value if isinstance(value, str) else _BAD


def _mapping(value: object) -> object:
    return value if isinstance(value, Mapping) else _BAD


def _reasons(value: object) -> object:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return _BAD


def _choice(key: str, field: str, enum: type[StrEnum]) -> tuple[str, _Knob]:
    def read(value: object) -> object:
        # YAML reads `failHow: 400` as an int; the knob means the same as "400".
        if isinstance(value, str | int) and not isinstance(value, bool):
            return enum._value2member_map_.get(str(value), _BAD)
        return _BAD

    return key, _Knob(field, read, f"must be one of {', '.join(member for member in enum)}")


def _fail(value: object) -> object:
    target = _FAIL_TARGET.read(value)
    return _FAILS[target] if isinstance(target, FailTarget) else _BAD


_FAILS = {
    FailTarget.PROVISION: frozenset({Action.PROVISION}),
    FailTarget.UNPROVISION: frozenset({Action.UNPROVISION}),
    FailTarget.BOTH: frozenset({Action.PROVISION, Action.UNPROVISION}),
}
_FAIL_TARGET = _choice("fail", "fails", FailTarget)[1]
_LATENCY = f"must be a number of milliseconds from 0 to {MAX_LATENCY_MS:.0f}"
_COUNT = "must be a whole number >= 0"
_FLAG = "must be true or false"
_KNOBS: dict[str, _Knob] = dict(
    [
        ("latencyMs", _Knob("latency_ms", _latency, _LATENCY)),
        _choice("mode", "mode", Mode),
        ("polls", _Knob("polls", _count, _COUNT)),
        _choice("tokenFormat", "token_format", TokenFormat),
        ("fail", _FAIL_TARGET._replace(read=_fail)),
        _choice("failHow", "fail_how", FailHow),
        ("transientErrors", _Knob("transient_errors", _count, _COUNT)),
        ("neverFinish", _Knob("never_finish", _flag, _FLAG)),
        ("garbage", _Knob("garbage", _flag, _FLAG)),
        ("invalid", _Knob("invalid", _reasons, "must be a string or a list of strings")),
        ("pollErrors", _Knob("poll_errors", _count, _COUNT)),
        ("contentType", _Knob("content_type", _text, "must be a string")),
        ("reset", _Knob("reset", _flag, _FLAG)),
        ("publicInfo", _Knob("public_info", _mapping, "must be a mapping")),
        ("privateInfo", _Knob("private_info", _mapping, "must be a mapping")),
        ("publicInfoJson", _Knob("public_info_json", _text, "must be a string (JSON text)")),
        ("validationLatencyMs", _Knob("validation_latency_ms", _latency, _LATENCY)),
        _choice("validationFail", "validation_fail", CallFailure),
        ("validationPolls", _Knob("validation_polls", _count, _COUNT)),
        _choice("validationStatus", "validation_status", ValidationOutcome),
        ("aclFail", _Knob("acl_fail", _flag, _FLAG)),
        _choice("aclMode", "acl_mode", Mode),
        ("aclGate", _Knob("acl_gate", _text, "must be a string")),
        ("gate", _Knob("gate", _text, "must be a string")),
    ]
)


def _is_gate_name(name: str) -> bool:
    """A gate is opened at /mock/gates/{name}: the name must fit in one path segment."""
    return bool(name) and "/" not in name and name.isprintable()
