"""What the people who run the service look at: Prometheus metrics and the Tech Adapters'
health as this replica sees it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from provisioner.api.deps import problems
from provisioner.api.schemas import TechAdapterList
from provisioner.api.security import ADMIN_ACCESS, metrics_access
from provisioner.telemetry.metrics import Metrics

router = APIRouter()


@router.get(
    "/metrics",
    tags=["observability"],
    # Open, or a token with any scope, as PROVISIONER_METRICS_AUTH says.
    dependencies=[Depends(metrics_access)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problems(401, 403),
    },
    summary="Prometheus metrics of this replica (text exposition format)",
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    body, content_type = registry.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get(
    "/v1/tech-adapters",
    response_model=TechAdapterList,
    tags=["observability"],
    responses=problems(401, 403),
    dependencies=[ADMIN_ACCESS],
    summary="Each registered Tech Adapter per environment, with its health as seen from here",
)
async def tech_adapters(request: Request) -> TechAdapterList:
    """Figures kept in memory by the replica that answers (`replicaId`), from its own calls
    since it started: last success, last error, calls in flight, recent latency."""
    runtime = request.app.state.runtime
    reports = runtime.metrics.health.report(
        runtime.registry.endpoints(), runtime.worker.slot_usage()
    )
    return TechAdapterList.model_validate({"replica_id": runtime.replica_id, "items": reports})
