"""Who may call what: every route declares its scope in one line, as a dependency.

    @router.get("/v1/things", dependencies=[READ_ACCESS])            # any scope reads
    async def things(principal: AdminDep) -> ...                     # admin, and who asked
    async def deploy(principal: Annotated[Principal, DEPLOY_TARGET]) # deploy:<the body's env>
    MY_TARGET = Depends(require_deploy(my_environment))              # env from your request

The credential is checked before the body is read (``401``), the scope once the request says
what it touches (``403`` naming the scope). ``require_deploy(environment_of)`` takes any
dependency that yields the environment: a path parameter, the body, the operation in the
store. ``undeclared_routes`` lists the routes that declare nothing (a test keeps it empty).
"""

# No ``from __future__ import annotations``: FastAPI reads the signatures of the dependencies
# built in ``require_deploy``, whose annotations name a local variable.

from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.routing import BaseRoute

from provisioner.api.body import DeployInput, StrictJsonRoute, read_deploy_input
from provisioner.api.deps import ReadsDep
from provisioner.api.params import IdPath, IdQuery, JsonBool, OperationIdPath
from provisioner.api.schemas import UndeployRequest
from provisioner.auth.authenticator import Authenticator
from provisioner.auth.scopes import (
    ADMIN,
    DEPLOY_ANYWHERE,
    READ,
    VALIDATE,
    Principal,
    deploy_scope,
)
from provisioner.errors import InvalidRequestError, Problem

SCOPE_ATTRIBUTE = "provisioner_scope"
OPEN = "open"  # the scope of a route anyone may call (health checks)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token (`provisioner token create`) or, when an OIDC issuer is set, "
    "a JWT it signed",
)
Dependency = Callable[..., Awaitable[Any]]


def _declares(scope: str) -> Callable[[Dependency], Dependency]:
    def mark(dependency: Dependency) -> Dependency:
        setattr(dependency, SCOPE_ATTRIBUTE, scope)
        return dependency

    return mark


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, proved by its bearer credential (``401`` otherwise)."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):  # checked by AuthenticatedRoute before the body
        return known
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.authenticate(credentials.credentials if credentials else None)


class AuthenticatedRoute(StrictJsonRoute):
    """A route whose bearer credential is checked before FastAPI reads its JSON body, so that
    an anonymous request is ``401`` whatever its body (``400`` would tell it the body was
    read); the ``authenticated`` dependency reuses the principal."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def first(request: Request) -> Response:
            scheme, credential = get_authorization_scheme_param(
                request.headers.get("authorization")
            )
            authenticator: Authenticator = request.app.state.authenticator
            request.state.principal = await authenticator.authenticate(
                credential if scheme.lower() == "bearer" else None
            )
            return await handler(request)

        return first


def require(scope: str) -> Dependency:
    """A dependency that admits principals holding ``scope`` and yields the principal."""

    @_declares(scope)
    async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        principal.check(scope)
        return principal

    return dependency


def require_deploy(environment_of: Dependency) -> Dependency:
    """A dependency that admits principals holding ``deploy:<ENV>``, ENV being what
    ``environment_of`` (itself a dependency) yields; None when the request names none."""

    @_declares("deploy:ENV")
    async def dependency(
        principal: Annotated[Principal, Depends(authenticated)],
        environment: Annotated[str | None, Depends(environment_of)],
    ) -> Principal:
        if environment is None:
            if not principal.grants(DEPLOY_ANYWHERE):
                # Nothing to authorise against; the command would refuse it the same way.
                raise InvalidRequestError(
                    "the descriptor is invalid",
                    [Problem("environment", "is required (in the request or the descriptor)")],
                )
        else:
            principal.check(deploy_scope(environment))
        return principal

    return dependency


# ``?dryRun=true`` (the Kubernetes convention): only say what the request would do.
DryRunQuery = Annotated[
    bool,
    Query(alias="dryRun", description="only say what would be done (200 with the plan)"),
    JsonBool,
]


def require_deploy_or_dry_run(environment_of: Dependency) -> Dependency:
    """``deploy:<ENV>`` as ``require_deploy``; a dry run of it needs ``validate`` only."""
    deploy = require_deploy(environment_of)

    @_declares("deploy:ENV, or validate for a dry run")
    async def dependency(
        principal: Annotated[Principal, Depends(authenticated)],
        environment: Annotated[str | None, Depends(environment_of)],
        dry_run: DryRunQuery = False,
    ) -> Principal:
        if dry_run:
            principal.check(VALIDATE)
            return principal
        checked: Principal = await deploy(principal, environment)
        return checked

    return dependency


@_declares(OPEN)
async def open_access() -> None:
    """Declares a route open to anyone (``/healthz``, ``/readyz``)."""


@_declares("read, or open by PROVISIONER_METRICS_AUTH=open")
async def metrics_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """For ``/metrics``: open, or the ``read`` scope, as ``PROVISIONER_METRICS_AUTH`` says."""
    authenticator: Authenticator = request.app.state.authenticator
    if authenticator.metrics_open:
        return
    principal = await authenticator.authenticate(credentials.credentials if credentials else None)
    principal.check(READ)


# --- where requests say which environment they touch -----------------------------------


async def deploy_input(request: Request, environment: IdQuery = None) -> DeployInput:
    """The deploy body (a JSON envelope or a YAML descriptor), read once per request."""
    return await read_deploy_input(request, environment=environment)


DeployInputDep = Annotated[DeployInput, Depends(deploy_input)]


async def deploy_environment(given: DeployInputDep) -> str | None:
    """The target of a deploy: the request's environment, else the descriptor's."""
    if given.environment is not None:
        return given.environment
    document = given.document
    value = document.get("environment") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


async def undeploy_body(body: UndeployRequest) -> UndeployRequest:
    return body


UndeployBodyDep = Annotated[UndeployRequest, Depends(undeploy_body)]


async def undeploy_environment(body: UndeployBodyDep) -> str:
    return body.environment


async def path_environment(environment: IdPath) -> str:
    return environment


async def operation_environment(operation_id: OperationIdPath, reads: ReadsDep) -> str:
    """The environment of the operation in the path (``404`` if there is none)."""
    return (await reads.operation(operation_id)).environment


READ_ACCESS = Depends(require(READ))
VALIDATE_ACCESS = Depends(require(VALIDATE))
ADMIN_ACCESS = Depends(require(ADMIN))
OPEN_ACCESS = Depends(open_access)
DEPLOY_TARGET = Depends(require_deploy_or_dry_run(deploy_environment))
UNDEPLOY_TARGET = Depends(require_deploy_or_dry_run(undeploy_environment))
OPERATION_TARGET = Depends(require_deploy(operation_environment))
PATH_TARGET = Depends(require_deploy(path_environment))

ReaderDep = Annotated[Principal, READ_ACCESS]
ValidatorDep = Annotated[Principal, VALIDATE_ACCESS]
AdminDep = Annotated[Principal, ADMIN_ACCESS]


def declared_scopes(dependant: Dependant) -> Iterator[str]:
    """The scopes the dependencies of a route (at any depth) declare."""
    for sub in dependant.dependencies:
        scope = getattr(sub.call, SCOPE_ATTRIBUTE, None)
        if isinstance(scope, str):
            yield scope
        yield from declared_scopes(sub)


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # Recent FastAPI keeps an included router whole, behind a route of its own.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def route_scopes(app: FastAPI) -> dict[str, list[str]]:
    """Each API route ("METHOD /path") and the scopes its dependencies declare."""
    return {
        f"{method} {route.path}": list(declared_scopes(route.dependant))
        for route in _api_routes(app.routes)
        for method in sorted(route.methods or ())
    }


def undeclared_routes(app: FastAPI) -> list[str]:
    """The API routes that declare no scope (the documentation routes are FastAPI's own)."""
    return [route for route, scopes in route_scopes(app).items() if not scopes]
