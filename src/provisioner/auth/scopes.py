"""Scopes and principals: what a caller may do, decided by pure rules.

| scope | reaches |
|---|---|
| ``read`` | every GET |
| ``deploy:ENV`` | deploy, undeploy, retry, cancel, ACL updates in environment ENV |
| ``deploy:*`` | the same in every environment |
| ``validate`` | validations and dry runs |
| ``admin`` | tokens, reverse provisioning, manual overrides, the adapter registry views |

Every scope implies ``read``; no other scope implies another (``admin`` does not deploy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from provisioner.domain.descriptor import identifier_problem
from provisioner.errors import PermissionDeniedError

READ = "read"
VALIDATE = "validate"
ADMIN = "admin"
DEPLOY_PREFIX = "deploy:"
DEPLOY_ANYWHERE = "deploy:*"
SIMPLE_SCOPES = (READ, VALIDATE, ADMIN)


def deploy_scope(environment: str) -> str:
    """The scope that deploys to ``environment``."""
    return f"{DEPLOY_PREFIX}{environment}"


def scope_problem(scope: str) -> str | None:
    """What is wrong with a scope's spelling (None: it is one)."""
    if scope in SIMPLE_SCOPES or scope == DEPLOY_ANYWHERE:
        return None
    if scope.startswith(DEPLOY_PREFIX):
        problem = identifier_problem(scope.removeprefix(DEPLOY_PREFIX))
        return None if problem is None else f"{scope!r}: the environment {problem}"
    return f"{scope!r} is not a scope (read, validate, admin, deploy:ENVIRONMENT or deploy:*)"


def known_scopes(values: Iterable[str]) -> frozenset[str]:
    """The values that are scopes; anything else (an IdP's own scopes, such as ``openid``)
    grants nothing."""
    return frozenset(value for value in values if scope_problem(value) is None)


class PrincipalKind(StrEnum):
    TOKEN = "token"
    JWT = "jwt"
    ANONYMOUS = "anonymous"  # authentication is off


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an API token's name or a JWT's subject, with their scopes.

    ``name`` is None only when authentication is off; that principal may do everything."""

    name: str | None
    scopes: frozenset[str]
    kind: PrincipalKind

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(None, frozenset(), PrincipalKind.ANONYMOUS)

    def grants(self, scope: str) -> bool:
        """Whether this principal holds ``scope`` (or one that implies it)."""
        if self.kind is PrincipalKind.ANONYMOUS:
            return True
        if scope == READ:
            return bool(self.scopes)
        if scope in self.scopes:
            return True
        return scope.startswith(DEPLOY_PREFIX) and DEPLOY_ANYWHERE in self.scopes

    def deploys_somewhere(self) -> bool:
        """Whether it holds a deploy scope for at least one environment."""
        return self.kind is PrincipalKind.ANONYMOUS or any(
            scope.startswith(DEPLOY_PREFIX) for scope in self.scopes
        )

    def check(self, scope: str) -> None:
        """Raise ``PermissionDeniedError`` naming ``scope`` unless this principal holds it."""
        if not self.grants(scope):
            raise PermissionDeniedError(scope)
