"""Wire schemas of the Witboost Tech Adapter API (2.2.0, tolerant of 2.1.0 and the python
scaffold): what adapters answer, read leniently where the variants differ."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

Status = Literal["RUNNING", "COMPLETED", "FAILED"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class WireInfo(_Lenient):
    public_info: dict[str, Any] | None = Field(default=None, alias="publicInfo")
    private_info: dict[str, Any] | None = Field(default=None, alias="privateInfo")


class WireProvisioningStatus(_Lenient):
    """``ProvisioningStatus``; ``result`` is deprecated and ``logs`` absent before 2.2.0."""

    status: Status
    result: str | None = None
    info: WireInfo | None = None
    logs: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("logs", mode="before")
    @classmethod
    def _only_log_objects(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
        return value


class WireMoreInfo(_Lenient):
    problems: list[str] = Field(default_factory=list)
    solutions: list[str] = Field(default_factory=list)


class WireError(_Lenient):
    """Every error body adapters send, read at once: ``RequestValidationError``, ``SystemError``,
    the 2.1.0 ``ValidationError`` and FastAPI's own ``{"detail": ...}`` (a 404 of an unknown
    route, a 422 of a body its models refuse).

    A field of an unexpected type is dropped, not the whole body: ``errors`` as one string must
    not lose the ``userMessage`` beside it.
    """

    errors: list[str] | None = None
    error: str | None = None
    user_message: str | None = Field(default=None, alias="userMessage")
    input: str | None = None
    input_error_field: str | None = Field(default=None, alias="inputErrorField")
    more_info: WireMoreInfo | None = Field(default=None, alias="moreInfo")
    fastapi_detail: str | list[str] | None = Field(default=None, alias="detail")

    @field_validator("fastapi_detail", mode="before")
    @classmethod
    def _fastapi_detail(cls, value: object) -> object:
        """``detail`` is a string, or a list of ``{loc, msg, type}``: one line per item."""
        if isinstance(value, list):
            return [line for line in (_detail_line(item) for item in value) if line]
        return value

    @field_validator("*", mode="wrap")
    @classmethod
    def _drop_invalid(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            return None

    def fields(self) -> dict[str, Any]:
        """The fields worth storing on a failed task, in the spec's (and FastAPI's) names."""
        return self.model_dump(
            by_alias=True,
            exclude_none=True,
            include={
                "errors": True,
                "error": True,
                "user_message": True,
                "input": True,
                "input_error_field": True,
                # The spec's fields only: what else an adapter puts there (privateInfo) is dropped.
                "more_info": {"problems", "solutions"},
                "fastapi_detail": True,
            },
        )

    def explanations(self) -> list[str]:
        """The texts that explain the error, each once, in the order a reader wants them."""
        detail = self.fastapi_detail
        parts = [
            self.user_message,
            self.error,
            *(self.errors or []),
            *([detail] if isinstance(detail, str) else detail or []),
            *(self.more_info.problems if self.more_info is not None else []),
        ]
        # Adapters often put the same problem in ``errors`` and in ``moreInfo.problems``.
        return list(dict.fromkeys(part for part in parts if part))


def _detail_line(item: object) -> str | None:
    """``"body.descriptor: Field required"`` from FastAPI's ``{loc, msg, type}``."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("msg"), str):
        return None
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
    return f"{where}: {item['msg']}" if where else str(item["msg"])


class WireValidationResult(_Lenient):
    valid: bool
    error: WireError | None = None


class _ValidationInfo(_Lenient):
    public_info: WireValidationResult | None = Field(default=None, alias="publicInfo")


class WireValidationStatus(_Lenient):
    """``ValidationStatus``: the result is ``info.publicInfo`` (2.2.0) or ``result`` (scaffold)."""

    status: Status
    info: _ValidationInfo | None = None
    result: WireValidationResult | None = None

    def outcome(self) -> WireValidationResult | None:
        if self.info is not None and self.info.public_info is not None:
            return self.info.public_info
        return self.result


class WireReverseProvisioningStatus(_Lenient):
    status: Status
    updates: dict[str, Any] = Field(default_factory=dict)
    logs: list[dict[str, Any]] = Field(default_factory=list)


def decode_token(body: str) -> str | None:
    """The token of a 202 answer: raw text, ``text/plain`` or a JSON-quoted string."""
    text = body.strip()
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        text = value if isinstance(value, str) else ""
    elif text[:1] in ("{", "[") or text in ("null", "true", "false"):
        return None  # a JSON value, but not a string: no token
    # Otherwise raw text, whatever the label: Spring sends a String body unquoted even as JSON.
    # Tokens travel in URL paths and database columns: printable text only.
    if not text or len(text) > 1024 or not text.isprintable():
        return None
    return text
