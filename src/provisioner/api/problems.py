"""Errors as RFC 9457 problem details; the only place HTTP status codes are chosen."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from provisioner import correlation
from provisioner.errors import (
    AdapterError,
    AtCapacityError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DatabaseUnavailableError,
    IdentityProviderUnavailableError,
    InvalidDescriptorError,
    InvalidRequestError,
    NotFoundError,
    OperationActiveError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PolicyDeniedError,
    PolicyError,
    ProvisionerError,
)

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:provisioner:problem:"
# Problems listed in one answer: a descriptor with 40,000 unknown ids gets a small 422 that
# lists the first ones and says how many there are.
MAX_LISTED_PROBLEMS = 100

# Most specific first: the first class that matches decides.
_TABLE: list[tuple[type[ProvisionerError], int, str, str]] = [
    (PayloadTooLargeError, 413, "payload-too-large", "Request body too large"),
    (BadRequestError, 400, "malformed-request", "Malformed request"),
    (InvalidDescriptorError, 422, "invalid-descriptor", "Invalid descriptor"),
    (PolicyDeniedError, 422, "policy-denied", "Refused by policy"),
    (InvalidRequestError, 422, "invalid-request", "Invalid request"),
    (NotFoundError, 404, "not-found", "Not found"),
    (OperationActiveError, 409, "operation-active", "Another operation is active"),
    (ConflictError, 409, "conflict", "Conflict"),
    (DatabaseUnavailableError, 503, "database-unavailable", "Database unavailable"),
    (AuthenticationError, 401, "unauthorized", "Unauthorized"),
    (PermissionDeniedError, 403, "forbidden", "Forbidden"),
    (
        IdentityProviderUnavailableError,
        503,
        "identity-provider-unavailable",
        "Identity provider unavailable",
    ),
    (AtCapacityError, 503, "at-capacity", "At capacity"),
    (AdapterError, 502, "adapter-error", "Tech Adapter error"),
    (PolicyError, 500, "policy-error", "A policy failed"),
    (ConfigurationError, 500, "configuration-error", "Configuration error"),
]


class UnsupportedMediaTypeError(BadRequestError):
    """The request body has a content type this endpoint does not read."""


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _challenge(exc: ProvisionerError) -> dict[str, str] | None:
    """RFC 6750's WWW-Authenticate for a refused credential or a missing scope."""
    if isinstance(exc, AuthenticationError):
        return {"WWW-Authenticate": "Bearer" if exc.missing else 'Bearer error="invalid_token"'}
    if isinstance(exc, PermissionDeniedError):
        scope = _quoted(exc.scope)
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope={scope}'}
    return None


def _provisioner_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvisionerError)
    if isinstance(exc, UnsupportedMediaTypeError):
        return problem(415, "unsupported-media-type", "Unsupported media type", exc.message)
    status, slug, title = 500, "internal-error", "Internal error"
    for cls, code, name, heading in _TABLE:
        if isinstance(exc, cls):
            status, slug, title = code, name, heading
            break
    extra: dict[str, Any] = {}
    detail = exc.message
    if isinstance(exc, InvalidRequestError):
        listed = exc.problems[:MAX_LISTED_PROBLEMS]
        extra["errors"] = [{"path": p.path, "message": p.message} for p in listed]
        if len(exc.problems) > len(listed):
            detail += f" ({len(exc.problems)} problems; the first {len(listed)} are listed)"
    if isinstance(exc, OperationActiveError):
        extra["operationId"] = exc.operation_id
    if isinstance(exc, AdapterError):
        extra["adapterError"] = exc.detail
    if isinstance(exc, PermissionDeniedError):
        extra["requiredScope"] = exc.scope
    headers = _challenge(exc)
    if isinstance(exc, AtCapacityError):
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    if status >= 500:
        log.warning("request_failed", path=request.url.path, error=exc.message)
    return problem(status, slug, title, detail, headers=headers, **extra)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "path": ".".join(str(part) for part in error.get("loc", ()) if part != "body"),
            "message": error.get("msg", "invalid"),
        }
        for error in exc.errors()
    ]
    return problem(
        422, "invalid-request", "Invalid request", "the request is invalid", errors=errors
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc.__cause__, ProvisionerError):
        # FastAPI turns an error raised while reading a body into "There was an error parsing
        # the body"; ours says what was wrong (api.body.StrictJsonRoute, the size limit).
        return _provisioner_error(request, exc.__cause__)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    # Starlette's 405 carries the Allow header (RFC 9110 requires it).
    return problem(
        exc.status_code,
        slug,
        str(exc.detail),
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, exc_info=exc)
    # Answered outside the middleware that sets it on every other answer.
    current = correlation.current()
    headers = {"X-Request-Id": current.request_id} if current is not None else None
    return problem(
        500, "internal-error", "Internal error", "an unexpected error occurred", headers=headers
    )


def problem_documents(schema: dict[str, Any]) -> dict[str, Any]:
    """Publish every 4xx/5xx answer of the OpenAPI document as a problem details body."""
    problem_schema = {"$ref": "#/components/schemas/ProblemOut"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {PROBLEM_JSON: {"schema": problem_schema}}
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProvisionerError, _provisioner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
