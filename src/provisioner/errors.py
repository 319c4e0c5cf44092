"""The errors provisioner raises, all under one root.

    ProvisionerError
    ├── BadRequestError              a body that cannot be read (malformed YAML/JSON, wrong type)
    │   ├── PayloadTooLargeError     a body over the configured size limit
    │   └── UnstorableValueError     a value the database cannot store (NUL, out of range)
    ├── InvalidRequestError          a readable request that breaks rules; carries every Problem
    │   ├── InvalidDescriptorError   the descriptor itself is invalid (cycle, unknown id, ...)
    │   └── PolicyDeniedError        a policy's deny rule refuses the request
    ├── NotFoundError                an operation, release or component that does not exist
    ├── ConflictError                the request clashes with current state
    │   ├── OperationActiveError     another operation is active on the same unit and environment
    │   ├── OperationFinishedError   the operation already ended (cancel)
    │   └── ReleaseChangedError      the release changed while a request was planned against it
    ├── ConfigurationError           the adapter registry or settings are unusable
    │   └── ReplicaIdInUseError      a live process already runs with this replica id
    ├── AuthenticationError          no credentials, or credentials that prove nothing
    ├── PermissionDeniedError        a known principal without the scope a request needs
    ├── IdentityProviderUnavailableError  the OIDC keys cannot be fetched right now
    │   └── PolicyError              a policy cannot be compiled or evaluated
    ├── AdapterError                 a Tech Adapter call did not give a usable result
    │   ├── AdapterTransientError    may pass if repeated (connect error, 502/503/504, reset)
    │   └── AdapterTimeoutError      the adapter took longer than its timeoutSeconds
    ├── LeaseLostError               another owner took the operation over (fencing)
    ├── DatabaseUnavailableError     the database cannot be reached right now
    └── AtCapacityError              this replica has no room for it now (open event streams)

HTTP status codes are assigned in the API layer only (``provisioner.api.problems``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (a dotted path) and what."""

    path: str
    message: str


class ProvisionerError(Exception):
    """Root of every error provisioner raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ProvisionerError):
    """The request body cannot be read (malformed, wrong shape, unsafe)."""


class PayloadTooLargeError(BadRequestError):
    """The request body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class UnstorableValueError(BadRequestError):
    """The request holds a value the database refuses (a NUL character, a number too big)."""


class InvalidRequestError(ProvisionerError):
    """A readable request that breaks one or more rules; lists every problem."""

    def __init__(self, message: str, problems: Iterable[Problem]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class InvalidDescriptorError(InvalidRequestError):
    """The deployment unit descriptor is invalid."""


class PolicyDeniedError(InvalidRequestError):
    """A policy refuses the request; each problem's path is the policy (package) that did."""


class NotFoundError(ProvisionerError):
    """The thing asked for does not exist."""


class ConflictError(ProvisionerError):
    """The request clashes with the current state."""


class OperationActiveError(ConflictError):
    """Another operation is already active on this deployment unit and environment."""

    def __init__(self, deployment_unit_id: str, environment: str, operation_id: str) -> None:
        super().__init__(
            f"operation {operation_id} is already active on {deployment_unit_id!r} "
            f"in environment {environment!r}"
        )
        self.operation_id = operation_id


class OperationFinishedError(ConflictError):
    """The operation has already finished."""


class ReleaseChangedError(ConflictError):
    """An operation was submitted on the release while this request was planned against it."""


class ConfigurationError(ProvisionerError):
    """The settings or the Tech Adapter registry cannot be used."""


class ReplicaIdInUseError(ConfigurationError):
    """Another live process heartbeats under the replica id this process was given."""


class AuthenticationError(ProvisionerError):
    """The request carries no credentials, or credentials that are unknown, expired, revoked,
    badly signed or otherwise unacceptable. ``missing``: none were sent at all."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class PermissionDeniedError(ProvisionerError):
    """The principal is known but lacks ``scope``, which the request needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"this request needs the scope {scope!r}")
        self.scope = scope


class IdentityProviderUnavailableError(ProvisionerError):
    """The OIDC issuer's signing keys (JWKS) cannot be fetched, and none are known yet."""


class PolicyError(ConfigurationError):
    """A policy could not be compiled or evaluated (an operator's problem, not the request's)."""


class AdapterError(ProvisionerError):
    """A Tech Adapter call failed; ``detail`` is the readable error stored on the task."""

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.detail: dict[str, object] = {"message": message, **(detail or {})}


class AdapterTransientError(AdapterError):
    """A failure that may pass if the call is repeated (connection error, 502/503/504)."""

    def __init__(
        self,
        message: str,
        *,
        detail: dict[str, object] | None = None,
        not_processed: bool = False,
    ) -> None:
        super().__init__(message, detail=detail)
        # True when the adapter cannot have acted on the request (connection refused, 503),
        # the only case in which a provision POST may be sent again.
        self.not_processed = not_processed


class AdapterTimeoutError(AdapterError):
    """The adapter did not answer, or its operation did not finish, within ``timeoutSeconds``."""

    def __init__(self, adapter: str, seconds: float, *, awaiting: str = "finish") -> None:
        super().__init__(
            f"the Tech Adapter {adapter} did not {awaiting} within {seconds:g} s (timeoutSeconds)",
            detail={"adapter": adapter, "timeoutSeconds": seconds},
        )


class LeaseLostError(ProvisionerError):
    """The operation's lease passed to another owner; this owner must stop writing."""


class DatabaseUnavailableError(ProvisionerError):
    """The database cannot be reached (connection refused or lost); retry later."""


class AtCapacityError(ProvisionerError):
    """This replica is at a bound it keeps (such as open event streams); retry later."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
