"""What the mock adapter answers: Tech Adapter 2.2.0 response bodies, ready to send.

An `Answer` is a plain value (status code, bytes, media type) so that the adapter logic stays
independent of the web framework, and a final async answer can be stored and sent again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from provisioner.mockadapter.behaviour import Action, TokenFormat

ADAPTER_NAME = "mock-adapter"
_JSON = "application/json"
_GARBAGE = b"<html><body><h1>Mock adapter</h1><p>This is not JSON.</p></body></html>"


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status code, body and media type."""

    status_code: int
    body: bytes
    media_type: str
    # Cut the connection half-way through the body, as a crashing adapter or proxy would.
    cut: bool = False


def json_answer(payload: object, status_code: int = 200) -> Answer:
    """Serialize a JSON payload compactly.

    Payloads may echo parts of untrusted YAML (dates, non-string keys): those become strings
    rather than failing the answer.
    """
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # a key json cannot write (a date), or a circular reference
        text = json.dumps(_plain(payload), ensure_ascii=False, separators=(",", ":"), default=str)
    return Answer(status_code, text.encode(), _JSON)


def _plain(value: object, depth: int = 0) -> object:
    """A copy that JSON can write: string keys, no containers deeper than YAML allows."""
    if depth > 100:
        return "..."
    if isinstance(value, Mapping):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    return value


def token_answer(token: str, token_format: TokenFormat) -> Answer:
    """The 202 that hands out a token, as a JSON string or as raw text."""
    if token_format is TokenFormat.TEXT:
        return Answer(202, token.encode(), "text/plain")
    return json_answer(token, 202)


def garbage_answer() -> Answer:
    """A 200 whose body is not JSON, as a misbehaving adapter or proxy would send."""
    return Answer(200, _GARBAGE, "text/html")


def log_entry(level: str, message: str, phase: str) -> dict[str, str]:
    """One `Log` item of a ProvisioningStatus."""
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"timestamp": timestamp, "level": level, "message": message, "phase": phase}


def _display(label: str, value: str) -> dict[str, str]:
    """A publicInfo field in the shape the Witboost marketplace renders."""
    return {"type": "string", "label": label, "value": value}


def completed(
    action: Action,
    component_id: str,
    *,
    public_info: Mapping[str, Any] | None = None,
    private_info: Mapping[str, Any] | None = None,
    public_info_json: str | None = None,
) -> Answer:
    """ProvisioningStatus COMPLETED with public and private info.

    `public_info` and `private_info` (a component's `specific.mock.publicInfo`/`privateInfo`) are
    merged over the mock's own fields, which they may replace. `public_info_json` replaces
    `publicInfo` with raw JSON text, sent as written: values no serializer writes (`1e400`,
    `"\\u0000"`), to test how callers cope with them.
    """
    message = f"{action} of {component_id} completed"
    public = {
        "componentId": _display("Component", component_id),
        "operation": _display("Operation", action.value),
        "provisionedBy": _display("Provisioned by", ADAPTER_NAME),
    }
    private: dict[str, Any] = {"mockSecret": f"secret-{component_id}"}
    if public_info:
        public.update(public_info)
    if private_info:
        private.update(private_info)
    answer = json_answer(
        {
            "status": "COMPLETED",
            "result": message,
            "logs": [log_entry("INFO", message, action.value)],
            "info": {
                "privateInfo": private,
                **({"publicInfo": public} if public_info_json is None else {}),
            },
        }
    )
    if public_info_json is None:
        return answer
    # The body ends with the info object's "}}": append the raw publicInfo before them.
    raw = b',"publicInfo":' + public_info_json.encode()
    return replace(answer, body=answer.body[:-2] + raw + b"}}")


def running(operation: str, component_id: str | None) -> Answer:
    """ProvisioningStatus RUNNING of a provision, unprovision or updateacl."""
    message = f"{operation} of {component_id} is running"
    return json_answer(
        {"status": "RUNNING", "result": message, "logs": [log_entry("INFO", message, operation)]}
    )


def failed(action: Action, component_id: str) -> Answer:
    """ProvisioningStatus FAILED with an ERROR log."""
    message = f"{action} of {component_id} failed: specific.mock.fail asked for it"
    return json_answer(
        {"status": "FAILED", "result": message, "logs": [log_entry("ERROR", message, action.value)]}
    )


def request_validation_error(
    problems: Iterable[str], user_message: str, status_code: int = 400
) -> Answer:
    """RequestValidationError (400, or 404 for an unknown token)."""
    listed = list(problems)
    solutions = ["Correct the request as the problems say and send it again."]
    return json_answer(
        {
            "errors": listed,
            "userMessage": user_message,
            "moreInfo": {"problems": listed, "solutions": solutions},
        },
        status_code,
    )


def system_error(
    user_message: str, *, status_code: int = 500, problems: Iterable[str] = ()
) -> Answer:
    """SystemError (500, or 503 for a transient failure)."""
    listed = list(problems) or [user_message]
    solutions = ["Retry later; if the problem persists, contact the adapter's maintainers."]
    return json_answer(
        {
            "error": user_message,
            "userMessage": user_message,
            "moreInfo": {"problems": listed, "solutions": solutions},
        },
        status_code,
    )


def validation_result(errors: Iterable[str]) -> dict[str, Any]:
    """ValidationResult: valid when there are no errors."""
    listed = list(errors)
    if not listed:
        return {"valid": True}
    return {"valid": False, "error": {"errors": listed}}


def validation_status(status: str, result: Mapping[str, Any] | None = None) -> Answer:
    """ValidationStatus: RUNNING, COMPLETED with the result in info.publicInfo, or FAILED."""
    if result is None:
        return json_answer({"status": status})
    return json_answer({"status": status, "info": {"publicInfo": result}})


def acl_failed(component_id: str, refs: Iterable[str]) -> Answer:
    """ProvisioningStatus FAILED for an updateacl that `specific.mock.aclFail` makes fail."""
    message = (
        f"access for {len(list(refs))} identities on {component_id} failed: "
        "specific.mock.aclFail asked for it"
    )
    return json_answer(
        {"status": "FAILED", "result": message, "logs": [log_entry("ERROR", message, "updateacl")]}
    )


def acl_granted(component_id: str, refs: Iterable[str]) -> Answer:
    """ProvisioningStatus COMPLETED for an updateacl, listing the granted refs."""
    granted = list(refs)
    message = f"access granted to {len(granted)} identities on {component_id}"
    public_info = {
        "componentId": _display("Component", component_id),
        "grantedRefs": _display("Access granted to", ", ".join(granted)),
    }
    return json_answer(
        {
            "status": "COMPLETED",
            "result": message,
            "info": {"publicInfo": public_info, "privateInfo": {"refs": granted}},
            "logs": [log_entry("INFO", message, "updateacl")],
        }
    )


def reverse_provisioning_completed(params: Mapping[str, Any]) -> Answer:
    """ReverseProvisioningStatus COMPLETED echoing the params under spec.mesh.specific."""
    updates = {f"spec.mesh.specific.{key}": value for key, value in params.items()}
    message = f"reverse provisioning produced {len(updates)} updates"
    return json_answer(
        {
            "status": "COMPLETED",
            "updates": updates,
            "logs": [log_entry("INFO", message, "reverse-provisioning")],
        }
    )
