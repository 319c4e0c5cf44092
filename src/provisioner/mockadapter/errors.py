"""The errors the mock adapter raises while reading a request.

    MockAdapterError
    └── InvalidRequestError   the request cannot be served as sent: 400 RequestValidationError
                              (404 for a token the mock does not know)

Anything else raised inside a handler is a bug of the mock, answered 500 SystemError.
"""

from __future__ import annotations

from collections.abc import Iterable


class MockAdapterError(Exception):
    """Root of the errors the mock adapter raises."""


class InvalidRequestError(MockAdapterError):
    """The request is malformed or asks for nonsense; carries every problem found."""

    def __init__(
        self, problems: Iterable[str], *, user_message: str, status_code: int = 400
    ) -> None:
        self.problems = tuple(problems)
        self.user_message = user_message
        self.status_code = status_code
        super().__init__(f"{user_message}: {'; '.join(self.problems)}")
