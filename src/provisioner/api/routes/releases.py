"""Releases (a deployment unit in one environment) and their components."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from provisioner.api.body import StrictJsonRoute
from provisioner.api.deps import ReadsDep, problems
from provisioner.api.params import CursorQuery, IdPath, IdQuery, JsonBool
from provisioner.api.schemas import ComponentOut, ReleaseOut, ReleasePage
from provisioner.api.security import READ_ACCESS
from provisioner.domain.status import ReleaseStatus

router = APIRouter(
    prefix="/v1",
    route_class=StrictJsonRoute,
    dependencies=[READ_ACCESS],
    responses=problems(401, 403),
)


@router.get(
    "/deployment-units/{deployment_unit_id}/environments/{environment}",
    response_model=ReleaseOut,
    responses=problems(404),
)
async def get_release(
    deployment_unit_id: IdPath,
    environment: IdPath,
    reads: ReadsDep,
    include_descriptor: Annotated[bool, Query(alias="includeDescriptor"), JsonBool] = False,
) -> ReleaseOut:
    release = await reads.release(deployment_unit_id, environment)
    out = ReleaseOut.model_validate(release)
    if include_descriptor:
        out.descriptor = await reads.deployed_descriptor(release)
    return out


@router.get(
    "/deployment-units/{deployment_unit_id}/environments/{environment}/components/{component_id}",
    response_model=ComponentOut,
    responses=problems(404),
)
async def get_component(
    deployment_unit_id: IdPath, environment: IdPath, component_id: IdPath, reads: ReadsDep
) -> ComponentOut:
    view = await reads.component(deployment_unit_id, environment, component_id)
    return ComponentOut.model_validate(view)


@router.get("/releases", response_model=ReleasePage, responses=problems(400, 422))
async def list_releases(
    reads: ReadsDep,
    environment: IdQuery = None,
    status_: Annotated[ReleaseStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: CursorQuery = None,
) -> ReleasePage:
    page = await reads.releases(environment=environment, status=status_, limit=limit, cursor=cursor)
    return ReleasePage.model_validate(page)
