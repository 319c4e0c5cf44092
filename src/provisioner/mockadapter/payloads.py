"""Request bodies of the Tech Adapter API, read from JSON into values (descriptors stay YAML)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.mockadapter.descriptors import DescriptorKind, infer_kind
from provisioner.mockadapter.errors import InvalidRequestError

_KINDS = ", ".join(kind.value for kind in DescriptorKind)


@dataclass(frozen=True, slots=True)
class ProvisioningRequest:
    """A ProvisioningRequest: what to provision, unprovision or validate."""

    kind: DescriptorKind
    descriptor: str
    remove_data: bool
    latest_enriched_descriptor: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateAclRequest:
    """An UpdateAclRequest.

    `descriptor` is `provisionInfo.request`: the COMPONENT_DESCRIPTOR YAML the component was
    provisioned with. `result` is `provisionInfo.result` read as JSON (the component's last
    ProvisioningStatus) when it is JSON, else the text as sent (Witboost's samples send "").
    """

    refs: tuple[str, ...]
    descriptor: str
    result: object


@dataclass(frozen=True, slots=True)
class ReverseProvisioningRequest:
    """A ReverseProvisioningRequest."""

    use_case_template_id: str
    environment: str
    params: Mapping[str, Any]


def read_json_object(body: bytes | str) -> dict[str, Any]:
    """The body as a JSON object, or InvalidRequestError."""
    try:
        payload = json.loads(body)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise _invalid([f"body: not valid JSON ({exc})"]) from exc
    if not isinstance(payload, dict):
        raise _invalid(["body: must be a JSON object"])
    return payload


def parse_provisioning_request(body: bytes | str) -> ProvisioningRequest:
    """Read a ProvisioningRequest (provision, unprovision)."""
    payload = read_json_object(body)
    problems = _descriptor_problems(payload)
    if "descriptorKind" not in payload:
        problems.insert(0, "descriptorKind: is required")
    if problems:
        raise _invalid(problems)
    return ProvisioningRequest(
        kind=DescriptorKind(payload["descriptorKind"]),
        descriptor=payload["descriptor"],
        remove_data=bool(payload.get("removeData")),
        latest_enriched_descriptor=_optional_text(payload.get("latestEnrichedDescriptor")),
    )


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_validation_request(body: bytes | str) -> ProvisioningRequest:
    """Read a 2.2.0 ProvisioningRequest or a 2.1.0 ValidationRequest `{descriptor}`."""
    payload = read_json_object(body)
    problems = _descriptor_problems(payload)
    if problems:
        raise _invalid(problems)
    descriptor: str = payload["descriptor"]
    kind = payload.get("descriptorKind")
    return ProvisioningRequest(
        kind=DescriptorKind(kind) if kind is not None else infer_kind(descriptor),
        descriptor=descriptor,
        remove_data=bool(payload.get("removeData")),
    )


def _descriptor_problems(payload: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    kind = payload.get("descriptorKind")
    if kind is not None and kind not in DescriptorKind._value2member_map_:
        problems.append(f"descriptorKind: must be one of {_KINDS}")
    if not isinstance(payload.get("descriptor"), str):
        problems.append("descriptor: is required and must be a string (YAML)")
    if not isinstance(payload.get("removeData", False), bool | None):
        problems.append("removeData: must be a boolean")
    if not isinstance(payload.get("latestEnrichedDescriptor"), str | None):
        problems.append("latestEnrichedDescriptor: must be a string")
    return problems


def parse_update_acl_request(body: bytes | str) -> UpdateAclRequest:
    """Read an UpdateAclRequest (its descriptor stays YAML text, read by the caller)."""
    payload = read_json_object(body)
    refs, info = payload.get("refs"), payload.get("provisionInfo")
    problems: list[str] = []
    if not isinstance(refs, list) or not all(isinstance(ref, str) for ref in refs):
        problems.append("refs: is required and must be a list of strings")
    if not isinstance(info, dict):
        problems.append("provisionInfo: is required and must be an object {request, result}")
    else:
        problems.extend(
            f"provisionInfo.{key}: is required and must be a string ({what})"
            for key, what in (("request", "the COMPONENT_DESCRIPTOR YAML"), ("result", "JSON"))
            if not isinstance(info.get(key), str)
        )
    if problems or not isinstance(info, dict):
        raise _invalid(problems)
    return UpdateAclRequest(tuple(refs or ()), info["request"], _json_or_text(info["result"]))


def _json_or_text(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_reverse_provisioning_request(body: bytes | str) -> ReverseProvisioningRequest:
    """Read a ReverseProvisioningRequest."""
    payload = read_json_object(body)
    template, environment = payload.get("useCaseTemplateId"), payload.get("environment")
    params = payload.get("params") or {}
    problems = [
        f"{field}: is required and must be a string"
        for field, value in (("useCaseTemplateId", template), ("environment", environment))
        if not isinstance(value, str)
    ]
    if not isinstance(params, dict):
        problems.append("params: must be an object")
    if not isinstance(payload.get("catalogInfo"), dict | None):
        problems.append("catalogInfo: must be an object")
    if problems:
        raise _invalid(problems)
    return ReverseProvisioningRequest(str(template), str(environment), params)


def _invalid(problems: list[str]) -> InvalidRequestError:
    return InvalidRequestError(problems, user_message="The request is invalid")
