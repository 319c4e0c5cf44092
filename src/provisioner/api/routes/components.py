"""Changes to one component of a release: its access control (an UPDATE_ACL operation, run in
background like a deploy) and an operator's repair of a CORRUPT one (an OVERRIDE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status

from provisioner.api.deps import CommandsDep, problems
from provisioner.api.params import IdPath
from provisioner.api.schemas import AclRequest, ComponentStatusRequest, OperationOut
from provisioner.api.security import PATH_TARGET, AdminDep, AuthenticatedRoute
from provisioner.auth.scopes import Principal
from provisioner.domain.status import ComponentStatus

router = APIRouter(prefix="/v1", route_class=AuthenticatedRoute, responses=problems(401, 403))

COMPONENT = "/deployment-units/{deployment_unit_id}/environments/{environment}/components/"


@router.post(
    COMPONENT + "{component_id}/acl",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationOut,
    responses=problems(404, 409, 422),
    summary="Update a deployed component's access control through its Tech Adapter (an "
    "UPDATE_ACL operation)",
)
async def update_acl(
    deployment_unit_id: IdPath,
    environment: IdPath,
    component_id: IdPath,
    body: AclRequest,
    principal: Annotated[Principal, PATH_TARGET],
    response: Response,
    commands: CommandsDep,
) -> OperationOut:
    """202 with the operation (``Location``: where to follow it). Its task sends the refs
    and the component's ``provisionInfo`` (its descriptor YAML and last ProvisioningStatus) to
    the adapter's ``/v1/updateacl``; on success the component shows the refs and an
    ``ACL_UPDATED`` event goes to the Market Planes. A failed update leaves the component
    DEPLOYED. 409 if it is not DEPLOYED or another operation runs on the release."""
    view = await commands.update_acl(
        deployment_unit_id, environment, component_id, body.refs, principal=principal.name
    )
    response.headers["Location"] = f"/v1/operations/{view.id}"
    return OperationOut.model_validate(view)


@router.post(
    COMPONENT + "{component_id}/status",
    status_code=status.HTTP_201_CREATED,
    response_model=OperationOut,
    responses=problems(404, 409, 422),
    summary="Mark a CORRUPT component DEPLOYED or NOT_DEPLOYED by hand, with a reason (an "
    "OVERRIDE operation)",
)
async def override_status(
    deployment_unit_id: IdPath,
    environment: IdPath,
    component_id: IdPath,
    body: ComponentStatusRequest,
    principal: AdminDep,
    response: Response,
    commands: CommandsDep,
) -> OperationOut:
    """For an operator who fixed the component's platform by hand: no adapter is called. The
    OVERRIDE operation is recorded, ended, with the principal and the reason; the release's
    status is derived again. 409 unless the component is CORRUPT and no operation runs on the
    release."""
    view = await commands.override(
        deployment_unit_id,
        environment,
        component_id,
        ComponentStatus(body.status),
        reason=body.reason,
        principal=principal.name,
    )
    response.headers["Location"] = f"/v1/operations/{view.id}"
    return OperationOut.model_validate(view)
