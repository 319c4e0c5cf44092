"""Reading the body of a deploy request: a JSON envelope, or a raw YAML descriptor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from provisioner.api.problems import UnsupportedMediaTypeError
from provisioner.domain.descriptor import MAX_ID_LENGTH
from provisioner.domain.documents import load_json, load_yaml
from provisioner.errors import BadRequestError, InvalidRequestError, Problem
from provisioner.offload import offload

YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
ENVELOPE_FIELDS = frozenset({"descriptor", "environment", "components"})


@dataclass(frozen=True, slots=True)
class DeployInput:
    document: object
    environment: str | None
    components: list[str] | None
    size: int


async def read_deploy_input(request: Request, *, environment: str | None) -> DeployInput:
    """The descriptor, target environment and component subset of a deploy request."""
    body = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in YAML_MEDIA_TYPES:
        document = await offload(len(body), load_yaml, _text(body))
        return DeployInput(document, environment, None, len(body))
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"unsupported content type {media!r}: send application/json or application/yaml"
        )
    envelope = await offload(len(body), load_json, body)
    return await _read_envelope(envelope, environment, len(body))


async def _read_envelope(envelope: Any, query_environment: str | None, size: int) -> DeployInput:
    if not isinstance(envelope, dict):
        raise BadRequestError("the body must be a JSON object with a 'descriptor'")
    problems = [Problem(key, "unknown field") for key in envelope if key not in ENVELOPE_FIELDS]
    descriptor = envelope.get("descriptor")
    if descriptor is None:
        problems.append(Problem("descriptor", "is required (a YAML string or an object)"))
    elif not isinstance(descriptor, str | dict):
        problems.append(Problem("descriptor", "must be a YAML string or an object"))
    environment = envelope.get("environment", query_environment)
    if environment is not None and not _is_name(environment):
        problems.append(
            Problem("environment", f"must be printable text of 1 to {MAX_ID_LENGTH} characters")
        )
    if query_environment is not None and environment != query_environment:
        problems.append(Problem("environment", "differs from the environment query parameter"))
    components = envelope.get("components")
    if components is not None and (
        not isinstance(components, list)
        or not all(isinstance(item, str) and item for item in components)
    ):
        problems.append(Problem("components", "must be a list of component ids"))
    if problems:
        raise InvalidRequestError("the request is invalid", problems)
    document = (
        await offload(size, load_yaml, descriptor) if isinstance(descriptor, str) else descriptor
    )
    return DeployInput(document, environment, components, size)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the body is not UTF-8 text: {exc}") from None
