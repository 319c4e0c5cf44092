"""A release's Market Plane events and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from provisioner.api.body import StrictJsonRoute
from provisioner.api.deps import ReadsDep, problems
from provisioner.api.params import CursorQuery, IdPath
from provisioner.api.schemas import PublicationPage
from provisioner.api.security import READ_ACCESS

router = APIRouter(
    prefix="/v1",
    route_class=StrictJsonRoute,
    dependencies=[READ_ACCESS],
    responses=problems(401, 403),
)


@router.get(
    "/deployment-units/{deployment_unit_id}/environments/{environment}/publications",
    response_model=PublicationPage,
    responses=problems(400, 404, 422),
    summary="The release's events published to the Market Planes, with their deliveries",
)
async def list_publications(
    deployment_unit_id: IdPath,
    environment: IdPath,
    reads: ReadsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: CursorQuery = None,
) -> PublicationPage:
    """Newest first: each event (DEPLOYED, UNDEPLOYED, ACL_UPDATED) and, per configured Market
    Plane, whether it was acknowledged, after how many attempts, and the last error."""
    page = await reads.publications(deployment_unit_id, environment, limit=limit, cursor=cursor)
    return PublicationPage.model_validate(page)
