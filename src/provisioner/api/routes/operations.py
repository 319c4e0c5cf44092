"""Deploy and undeploy requests, and the operations they create: read, list, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from provisioner.api.deps import CommandsDep, ReadsDep, StreamsDep, problems
from provisioner.api.params import ID_SCHEMA, CursorQuery, IdQuery, OperationIdPath, UnitIdQuery
from provisioner.api.schemas import DryRunOut, EventList, OperationOut, OperationPage
from provisioner.api.security import (
    DEPLOY_TARGET,
    OPERATION_TARGET,
    READ_ACCESS,
    UNDEPLOY_TARGET,
    AuthenticatedRoute,
    DeployInputDep,
    DryRunQuery,
    UndeployBodyDep,
)
from provisioner.api.streaming import EVENT_STREAM_RESPONSE, EventStreamResponse, wants_event_stream
from provisioner.auth.scopes import Principal
from provisioner.domain.status import OperationStatus
from provisioner.service.dryrun import DryRun
from provisioner.store.views import OperationView

router = APIRouter(prefix="/v1", route_class=AuthenticatedRoute, responses=problems(401, 403))

EXAMPLE_DESCRIPTOR = {
    "id": "urn:dmb:dp:sales:orders:0",
    "name": "Orders",
    "version": "1.0.0",
    "environment": "development",
    "components": [
        {
            "id": "urn:dmb:cmp:sales:orders:0:storage",
            "name": "Orders storage",
            "kind": "storage",
            "version": "1.0.0",
            "infrastructureTemplateId": "urn:dmb:itm:aws-s3-storage-provisioner:0",
            "dependsOn": [],
            "specific": {},
        }
    ],
}
"""A descriptor the document shows (and the contract test deploys, to follow the links)."""

DESCRIPTOR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["descriptor"],
                    "properties": {
                        "descriptor": {
                            "description": "the deployment unit descriptor: YAML text (a "
                            "mapping; 400 if it is not one) or an object; 422 lists what "
                            "breaks the descriptor's rules",
                            "oneOf": [{"type": "string", "minLength": 1}, {"type": "object"}],
                        },
                        "environment": {
                            **ID_SCHEMA,
                            "type": ["string", "null"],
                            "description": "defaults to the descriptor's environment; when "
                            "the environment query parameter is given too, the same",
                        },
                        "components": {
                            "type": ["array", "null"],
                            "items": ID_SCHEMA,
                            "minItems": 1,
                            "description": "deploy only these components (ids of the "
                            "descriptor's components; null: all)",
                        },
                    },
                    "additionalProperties": False,
                },
                "example": {"descriptor": EXAMPLE_DESCRIPTOR},
            },
            "application/yaml": {
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "description": "the descriptor (a YAML mapping)",
                }
            },
        },
    }
}


# ``?dryRun=true``: every check of the real request, then the plan it would store, answered
# 200; nothing is stored and no adapter is called.
DRY_RUN_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": DryRunOut, "description": "dryRun=true: the plan; nothing was stored"}
}


def _accepted(response: Response, view: OperationView) -> OperationOut:
    response.headers["Location"] = f"/v1/operations/{view.id}"
    return OperationOut.model_validate(view)


def _planned(dry_run: DryRun) -> JSONResponse:
    body = DryRunOut.model_validate({"plan": dry_run, "warnings": dry_run.warnings})
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


@router.post(
    "/deployments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses={**DRY_RUN_ANSWER, **problems(400, 409, 413, 415, 422, 503)},
    openapi_extra=DESCRIPTOR_BODY,
    summary="Deploy a deployment unit (or some of its components)",
)
async def deploy(
    principal: Annotated[Principal, DEPLOY_TARGET],
    given: DeployInputDep,
    response: Response,
    commands: CommandsDep,
    dry_run: DryRunQuery = False,
) -> OperationOut | JSONResponse:
    """The request's environment (query, body or the descriptor's own) is the target: a
    descriptor for another environment is promoted to it."""
    submit = commands.dry_run_deploy if dry_run else commands.deploy
    result = await submit(
        given.document,
        environment=given.environment,
        components=given.components,
        document_size=given.size,
        principal=principal.name,
        warnings=given.warnings,
    )
    if isinstance(result, DryRun):
        return _planned(result)
    return _accepted(response, result)


@router.post(
    "/undeployments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses={**DRY_RUN_ANSWER, **problems(400, 404, 409, 413, 422, 503)},
    summary="Undeploy a deployment unit (or some of its components)",
)
async def undeploy(
    principal: Annotated[Principal, UNDEPLOY_TARGET],
    body: UndeployBodyDep,
    response: Response,
    commands: CommandsDep,
    dry_run: DryRunQuery = False,
) -> OperationOut | JSONResponse:
    submit = commands.dry_run_undeploy if dry_run else commands.undeploy
    result = await submit(
        body.deployment_unit_id,
        environment=body.environment,
        remove_data=body.remove_data,
        components=body.components,
        principal=principal.name,
    )
    if isinstance(result, DryRun):
        return _planned(result)
    return _accepted(response, result)


@router.get(
    "/operations/{operation_id}",
    response_model=OperationOut,
    responses=problems(404),
    dependencies=[READ_ACCESS],
)
async def get_operation(operation_id: OperationIdPath, reads: ReadsDep) -> OperationOut:
    return OperationOut.model_validate(await reads.operation(operation_id))


@router.get(
    "/operations",
    response_model=OperationPage,
    responses=problems(400, 422),
    dependencies=[READ_ACCESS],
)
async def list_operations(
    reads: ReadsDep,
    deployment_unit_id: UnitIdQuery = None,
    environment: IdQuery = None,
    status_: Annotated[OperationStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: CursorQuery = None,
) -> OperationPage:
    """Newest first. Tasks are not included; fetch one operation for its tasks."""
    page = await reads.operations(
        deployment_unit_id=deployment_unit_id,
        environment=environment,
        status=status_,
        limit=limit,
        cursor=cursor,
    )
    return OperationPage.model_validate(page)


@router.get(
    "/operations/{operation_id}/events",
    response_model=EventList,
    responses={**EVENT_STREAM_RESPONSE, **problems(404, 503)},
    dependencies=[READ_ACCESS],
)
async def list_events(
    operation_id: OperationIdPath,
    request: Request,
    reads: ReadsDep,
    streams: StreamsDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="only events with a greater id")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=2**63 - 1,
            description="a stream resumes after this event id (sent by EventSource clients)",
        ),
    ] = None,
) -> EventList | Response:
    """The operation's status transitions, in the order they happened; with
    `Accept: text/event-stream`, live, until the operation ends (503 with `Retry-After` when
    this replica streams its maximum already)."""
    if wants_event_stream(request):
        start = after if last_event_id is None else last_event_id
        stream = await streams.open(operation_id, after=start)
        return EventStreamResponse(stream, ping_seconds=request.app.state.stream_ping_seconds)
    events = await reads.events(operation_id, after=after, limit=limit)
    return EventList.model_validate({"items": events})


@router.post(
    "/operations/{operation_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=problems(404, 409),
)
async def cancel_operation(
    operation_id: OperationIdPath,
    principal: Annotated[Principal, OPERATION_TARGET],
    commands: CommandsDep,
) -> OperationOut:
    return OperationOut.model_validate(
        await commands.cancel(operation_id, principal=principal.name)
    )


@router.post(
    "/operations/{operation_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=problems(404, 409, 422),
)
async def retry_operation(
    operation_id: OperationIdPath,
    principal: Annotated[Principal, OPERATION_TARGET],
    response: Response,
    commands: CommandsDep,
) -> OperationOut:
    """Run again, as a new operation, the tasks that did not succeed."""
    return _accepted(response, await commands.retry(operation_id, principal=principal.name))
