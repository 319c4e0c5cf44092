"""Reading request bodies: the deploy body (a JSON envelope, or a raw YAML descriptor), and
every other JSON body through the same strict reader."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from provisioner.api.problems import UnsupportedMediaTypeError
from provisioner.domain.descriptor import identifier_problem
from provisioner.domain.documents import LoadedDocument, load_json, load_yaml
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
    warnings: tuple[Problem, ...] = ()  # harmless oddities of the body, by path


async def read_deploy_input(request: Request, *, environment: str | None) -> DeployInput:
    """The descriptor, target environment and component subset of a deploy request."""
    body = await request.body()
    # Aliases may not make a descriptor larger than the body limit allows a body to be.
    max_text: int = request.app.state.max_body_bytes
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in YAML_MEDIA_TYPES:
        loaded = await offload(len(body), _yaml(max_text), _text(body))
        return DeployInput(loaded.value, environment, None, len(body), loaded.warnings)
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"unsupported content type {media!r}: send application/json or application/yaml"
        )
    envelope = await offload(len(body), load_json, body)
    return await _read_envelope(envelope, environment, len(body), max_text)


async def _read_envelope(
    envelope: LoadedDocument, query_environment: str | None, size: int, max_text: int
) -> DeployInput:
    fields = envelope.value
    if not isinstance(fields, dict):
        raise BadRequestError("the body must be a JSON object with a 'descriptor'")
    problems = [Problem(key, "unknown field") for key in fields if key not in ENVELOPE_FIELDS]
    descriptor = fields.get("descriptor")
    if descriptor is None:
        problems.append(Problem("descriptor", "is required (a YAML string or an object)"))
    elif not isinstance(descriptor, str | dict):
        problems.append(Problem("descriptor", "must be a YAML string or an object"))
    environment = fields.get("environment", query_environment)
    if environment is not None and (problem := identifier_problem(environment)) is not None:
        problems.append(Problem("environment", problem))
    if query_environment is not None and environment != query_environment:
        problems.append(Problem("environment", "differs from the environment query parameter"))
    components = fields.get("components")
    problems.extend(_component_problems(components))
    if problems:
        raise InvalidRequestError("the request is invalid", problems)
    warnings = envelope.warnings
    if isinstance(descriptor, str):
        loaded = await offload(size, _yaml(max_text), descriptor)
        descriptor, warnings = loaded.value, warnings + loaded.warnings
    return DeployInput(descriptor, environment, components, size, warnings)


def _component_problems(components: object) -> list[Problem]:
    if components is None:
        return []
    if not isinstance(components, list):
        return [Problem("components", "must be a list of component ids")]
    if not components:  # a validation would ignore it, a deploy refuse it: refused alike
        return [Problem("components", "must list at least one component")]
    return [
        Problem(f"components[{index}]", problem)
        for index, item in enumerate(components)
        if (problem := identifier_problem(item)) is not None
    ]


def _yaml(max_text: int) -> Callable[[str], LoadedDocument]:
    def parse(text: str) -> LoadedDocument:
        return load_yaml(text, max_text=max_text, path="descriptor")

    return parse


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"the body is not UTF-8 text: {exc}") from None


class _StrictJsonRequest(Request):
    """A request whose JSON body is read like a descriptor's envelope: keys repeated with
    different values, NaN, infinities and excessive nesting are refused."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body()).value
        return self._json


class StrictJsonRoute(APIRoute):
    """Routes whose pydantic-validated JSON bodies are read by ``_StrictJsonRequest``.

    FastAPI reports an error raised while reading a body as a 400 ``HTTPException`` caused by
    it; ``api.problems`` renders the cause.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            # FastAPI would read another media type's body as no object at all (422 with an
            # empty path); say what the route reads instead.
            if media and media != "application/json" and not media.endswith("+json"):
                raise UnsupportedMediaTypeError(
                    f"unsupported content type {media!r}: send application/json"
                )
            scope = request.scope
            if not media:  # read as JSON, as the deploy body is
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
            return await handler(_StrictJsonRequest(scope, request.receive))

        return handler if self.body_field is None else strict
