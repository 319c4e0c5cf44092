"""The ``AdapterError``s of the Tech Adapter client: readable, bounded, without ``privateInfo``.

A failure's ``detail`` is stored on its task and shown by the API: the status code and the
adapter's own explanation (``userMessage``, ``error``, ``errors``, FastAPI's ``detail``,
``moreInfo``), or the body itself when it has none of those, or what was wrong with the answer,
or the connection error. An adapter's text is untrusted: it is kept without privateInfo (see
``without_private``), printable (no NUL, no lone surrogate: nothing a JSON column or the API's
encoder refuses) and bounded.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import ValidationError

from provisioner.adapters.reading import Answer, AnswerTooLargeError
from provisioner.adapters.wire import WireError
from provisioner.domain.privacy import mentions_private, without_private
from provisioner.engine.ports import JSON, AdapterEndpoint
from provisioner.errors import AdapterError, AdapterTransientError

TEXT_LIMIT = 2048  # characters of one adapter text (a body, a message) kept in an error
ITEMS_LIMIT = 100  # items of one adapter list (errors, problems) kept in an error
_GATEWAY_ERRORS = (502, 503, 504)


def error_body(content: bytes) -> WireError | None:
    """The adapter's explanation in an error body; None when the body has none (not JSON, or
    JSON without any known field: a proxy's page, an empty body, ``{"status": 500}``)."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    body = WireError.model_validate(data)
    return body if body.explanations() else None


def answer_error(
    endpoint: AdapterEndpoint,
    method: str,
    path: str,
    answer: Answer,
    body: WireError | None,
) -> AdapterError:
    """An error answer (4xx, 5xx, a status the call does not expect); ``body`` is
    ``error_body(answer.content)``. A 502, 503 or 504 is transient; a 503 was not processed."""
    detail = base_detail(endpoint, method, path)
    detail["statusCode"] = answer.status_code
    if body is not None:
        detail.update(shown(body.fields()))
        explanations = [one_line(text) for text in shown(body.explanations())]
    elif answer.content:
        detail["body"] = shown_body(answer)
        explanations = [one_line(detail["body"])]
    else:
        explanations = []
    summary = printable("; ".join(dict.fromkeys(text for text in explanations if text)))
    adapter, code = endpoint.infrastructure_template_id, answer.status_code
    message = f"{adapter} answered {code} to {method} {path}"
    if summary:
        message += f": {summary}"
    if answer.status_code in _GATEWAY_ERRORS:
        return AdapterTransientError(
            message, detail=detail, not_processed=answer.status_code == 503
        )
    return AdapterError(message, detail=detail)


def protocol_error(
    endpoint: AdapterEndpoint, method: str, path: str, answer: Answer, what: str
) -> AdapterError:
    """An answer that is not what the API promises: unreadable, unstorable, without a token."""
    detail = base_detail(endpoint, method, path)
    detail["statusCode"] = answer.status_code
    detail["contentType"] = printable(answer.content_type or "", limit=200) or None
    detail["body"] = shown_body(answer)
    return AdapterError(
        f"{endpoint.infrastructure_template_id} gave an invalid answer to {method} {path}: {what}",
        detail=detail,
    )


def unreadable_reason(exc: ValueError) -> str:
    """Why a body could not be read as the wire model: the JSON error, or the first field."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if not errors:
            return "invalid body"
        where = ".".join(str(part) for part in errors[0].get("loc", ()))
        message = str(errors[0].get("msg", "invalid body"))
        return printable(f"{where}: {message}" if where else message, limit=300)
    return printable(str(exc), limit=300)


def too_large(
    endpoint: AdapterEndpoint, method: str, path: str, exc: AnswerTooLargeError
) -> AdapterError:
    detail = base_detail(endpoint, method, path)
    detail["statusCode"] = exc.status_code
    detail["maxAnswerBytes"] = exc.limit
    return AdapterError(
        f"{endpoint.infrastructure_template_id} gave an invalid answer to {method} {path}: "
        f"answer too large (over {exc.limit} bytes, PROVISIONER_MAX_ANSWER_BYTES)",
        detail=detail,
    )


def transport_error(
    endpoint: AdapterEndpoint,
    method: str,
    path: str,
    exc: httpx.HTTPError,
    *,
    idempotent: bool = True,
) -> AdapterTransientError:
    """A failure on the wire: before the connection was made (the adapter cannot have seen
    the request), or after (it may have)."""
    detail = base_detail(endpoint, method, path)
    detail["cause"] = printable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return AdapterTransientError(
            f"cannot reach {endpoint.infrastructure_template_id} at {endpoint.url} "
            f"({detail['cause']})",
            detail=detail,
            not_processed=True,
        )
    message = (
        f"{endpoint.infrastructure_template_id} connection failed during {method} {path} "
        f"({type(exc).__name__})"
    )
    if not idempotent:
        message += "; the adapter may have received the request, so it was not sent again"
    return AdapterTransientError(message, detail=detail, not_processed=False)


def gave_up(
    endpoint: AdapterEndpoint, path: str, failures: int, last: AdapterError
) -> AdapterError:
    detail = base_detail(endpoint, "GET", path)
    detail["consecutiveFailures"] = failures
    detail["lastError"] = last.message
    return AdapterError(
        f"lost track of the operation at {endpoint.infrastructure_template_id}: {failures} "
        f"status polls failed in a row (last: {last.message})",
        detail=detail,
    )


def base_detail(endpoint: AdapterEndpoint, method: str, path: str) -> JSON:
    return {"adapter": endpoint.infrastructure_template_id, "request": f"{method} {path}"}


# --- adapter text, made safe to store and show --------------------------------------------------


def shown(value: Any) -> Any:
    """Adapter data for an error or a log shown to users: without privateInfo (text that
    mentions it is withheld), each text printable and bounded, each list bounded."""
    return _bounded(without_private(value, withhold_mentions=True))


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value, keep_lines=True)
    if isinstance(value, list):
        return [_bounded(item) for item in value[:ITEMS_LIMIT]]
    if isinstance(value, dict):
        return {key: _bounded(item) for key, item in value.items()}
    return value


def shown_body(answer: Answer) -> str:
    """An answer's body for an error report: JSON without privateInfo; other text withheld if it
    mentions privateInfo; printable and bounded either way."""
    try:
        text = json.dumps(
            without_private(json.loads(answer.content), withhold_mentions=True),
            ensure_ascii=False,
        )
    except (ValueError, RecursionError):
        text = answer.text
        if mentions_private(text):
            return "(the body is withheld: it mentions privateInfo)"
    return printable(text, keep_lines=True)


def printable(text: str, *, limit: int = TEXT_LIMIT, keep_lines: bool = False) -> str:
    """``text`` cut to ``limit`` characters, every character that is not printable (a control
    character, NUL, a lone surrogate) replaced by U+FFFD; new lines and tabs kept on request."""
    cut = text[:limit]
    if not cut.isprintable():
        allowed = "\n\t" if keep_lines else ""
        cut = "".join(ch if ch.isprintable() or ch in allowed else "\ufffd" for ch in cut)
    return cut + "…" if len(text) > limit else cut


def one_line(text: str) -> str:
    return " ".join(text.split())
