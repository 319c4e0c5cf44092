"""The REST API: deployments, operations, releases, and adapter pass-throughs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from provisioner.api.body import StrictJsonRoute, read_deploy_input
from provisioner.api.params import CheckedId, IdPath, IdQuery, JsonBool
from provisioner.api.schemas import (
    AclRequest,
    ComponentOut,
    EventList,
    EventOut,
    OperationOut,
    OperationPage,
    OperationStatusName,
    ProblemOut,
    ProvisioningResultOut,
    PublicInfo,
    ReleaseOut,
    ReleasePage,
    ReleaseStatusName,
    ReleaseSummaryOut,
    ReverseProvisioningOut,
    ReverseProvisioningRequest,
    UndeployRequest,
    ValidationItem,
    ValidationOut,
)
from provisioner.service import DeploymentService


def _service(request: Request) -> DeploymentService:
    service: DeploymentService = request.app.state.service
    return service


Service = Annotated[DeploymentService, Depends(_service)]


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Registered with the model so that its schema is published; ``problem_documents`` moves
    # every error answer to application/problem+json.
    return {code: {"model": ProblemOut} for code in codes}


_DESCRIPTOR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["descriptor"],
                    "properties": {
                        "descriptor": {
                            "description": "the deployment unit descriptor: YAML text or an object",
                            "oneOf": [{"type": "string"}, {"type": "object"}],
                        },
                        "environment": {
                            "type": "string",
                            "description": "defaults to the descriptor's environment",
                        },
                        "components": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "deploy only these components",
                        },
                    },
                    "additionalProperties": False,
                }
            },
            "application/yaml": {"schema": {"type": "string", "description": "the descriptor"}},
        },
    }
}

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)


def _accepted(response: Response, operation: OperationOut) -> OperationOut:
    response.headers["Location"] = f"/v1/operations/{operation.id}"
    return operation


@router.post(
    "/deployments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=_problems(400, 409, 413, 415, 422, 503),
    openapi_extra=_DESCRIPTOR_BODY,
    summary="Deploy a deployment unit (or some of its components)",
)
async def deploy(
    request: Request,
    response: Response,
    service: Service,
    environment: IdQuery = None,
) -> OperationOut:
    given = await read_deploy_input(request, environment=environment)
    view = await service.deploy(
        given.document,
        environment=given.environment,
        components=given.components,
        document_size=given.size,
    )
    return _accepted(response, OperationOut.of(view, warnings=given.warnings))


@router.post(
    "/undeployments",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=_problems(400, 404, 409, 413, 422, 503),
    summary="Undeploy a deployment unit (or some of its components)",
)
async def undeploy(body: UndeployRequest, response: Response, service: Service) -> OperationOut:
    view = await service.undeploy(
        body.deployment_unit_id,
        environment=body.environment,
        remove_data=body.remove_data,
        components=body.components,
    )
    return _accepted(response, OperationOut.of(view))


@router.get("/operations/{operation_id}", response_model=OperationOut, responses=_problems(404))
async def get_operation(operation_id: str, service: Service) -> OperationOut:
    return OperationOut.of(await service.operation(operation_id))


@router.get("/operations", response_model=OperationPage, responses=_problems(400, 422))
async def list_operations(
    service: Service,
    deployment_unit_id: Annotated[str | None, Query(alias="deploymentUnitId"), CheckedId] = None,
    environment: IdQuery = None,
    status_: Annotated[OperationStatusName | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> OperationPage:
    """Newest first. Tasks are not included; fetch one operation for its tasks."""
    page = await service.operations(
        deployment_unit_id=deployment_unit_id,
        environment=environment,
        status=status_,
        limit=limit,
        cursor=cursor,
    )
    return OperationPage(
        items=[OperationOut.of(view) for view in page.items], next_cursor=page.next_cursor
    )


@router.get("/operations/{operation_id}/events", response_model=EventList, responses=_problems(404))
async def list_events(
    operation_id: str,
    service: Service,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="only events with a greater id")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> EventList:
    """The operation's status transitions, in the order they happened."""
    events = await service.events(operation_id, after=after, limit=limit)
    return EventList(items=[EventOut.model_validate(event) for event in events])


@router.post(
    "/operations/{operation_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=_problems(404, 409),
)
async def cancel_operation(operation_id: str, service: Service) -> OperationOut:
    return OperationOut.of(await service.cancel(operation_id))


@router.post(
    "/operations/{operation_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=_problems(404, 409, 422),
)
async def retry_operation(operation_id: str, response: Response, service: Service) -> OperationOut:
    """Run again, as a new operation, the tasks that did not succeed."""
    return _accepted(response, OperationOut.of(await service.retry(operation_id)))


@router.get(
    "/deployment-units/{deployment_unit_id}/environments/{environment}",
    response_model=ReleaseOut,
    responses=_problems(404),
)
async def get_release(
    deployment_unit_id: IdPath,
    environment: IdPath,
    service: Service,
    include_descriptor: Annotated[bool, Query(alias="includeDescriptor"), JsonBool] = False,
) -> ReleaseOut:
    release = await service.release(deployment_unit_id, environment)
    descriptor = await service.deployed_descriptor(release) if include_descriptor else None
    return ReleaseOut.of(release, descriptor)


@router.get(
    "/deployment-units/{deployment_unit_id}/environments/{environment}/components/{component_id}",
    response_model=ComponentOut,
    responses=_problems(404),
)
async def get_component(
    deployment_unit_id: IdPath, environment: IdPath, component_id: IdPath, service: Service
) -> ComponentOut:
    return ComponentOut.of(await service.component(deployment_unit_id, environment, component_id))


@router.post(
    "/deployment-units/{deployment_unit_id}/environments/{environment}/components/{component_id}/acl",
    response_model=ProvisioningResultOut,
    responses=_problems(404, 409, 422, 502),
    summary="Update a deployed component's access control through its Tech Adapter",
)
async def update_acl(
    deployment_unit_id: IdPath,
    environment: IdPath,
    component_id: IdPath,
    body: AclRequest,
    service: Service,
) -> ProvisioningResultOut:
    result = await service.update_acl(deployment_unit_id, environment, component_id, body.refs)
    return ProvisioningResultOut(
        status="COMPLETED" if result.succeeded else "FAILED",
        info=PublicInfo(public_info=result.public_info),
        logs=result.logs,
        error=result.error,
    )


@router.get("/releases", response_model=ReleasePage, responses=_problems(400, 422))
async def list_releases(
    service: Service,
    environment: IdQuery = None,
    status_: Annotated[ReleaseStatusName | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> ReleasePage:
    page = await service.releases(
        environment=environment, status=status_, limit=limit, cursor=cursor
    )
    return ReleasePage(
        items=[ReleaseSummaryOut.model_validate(item) for item in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/validations",
    response_model=ValidationOut,
    responses=_problems(400, 413, 415, 422),
    openapi_extra=_DESCRIPTOR_BODY,
    summary="Validate a descriptor with every component's Tech Adapter (nothing is deployed)",
)
async def validate(
    request: Request,
    service: Service,
    environment: IdQuery = None,
) -> ValidationOut:
    given = await read_deploy_input(request, environment=environment)
    results = await service.validate(
        given.document, environment=given.environment, document_size=given.size
    )
    return ValidationOut(
        valid=all(item.valid for item in results),
        components=[
            ValidationItem(component_id=item.component_id, valid=item.valid, errors=item.errors)
            for item in results
        ],
    )


@router.post(
    "/reverse-provisioning",
    response_model=ReverseProvisioningOut,
    responses=_problems(422, 502),
    summary="Run a reverse provisioning through a Tech Adapter",
)
async def reverse_provision(
    body: ReverseProvisioningRequest, service: Service
) -> ReverseProvisioningOut:
    outcome = await service.reverse_provision(
        infrastructure_template_id=body.infrastructure_template_id,
        environment=body.environment,
        body={
            "useCaseTemplateId": body.use_case_template_id,
            "environment": body.environment,
            "params": body.params or {},
            "catalogInfo": body.catalog_info or {},
        },
    )
    return ReverseProvisioningOut(
        status="COMPLETED" if outcome.succeeded else "FAILED",
        updates=outcome.updates,
        logs=outcome.logs,
    )
