"""Calls passed through to a Tech Adapter: validation, reverse provisioning."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from provisioner.api.deps import AdapterCallsDep, problems
from provisioner.api.routes.operations import DESCRIPTOR_BODY
from provisioner.api.schemas import (
    ReverseProvisioningOut,
    ReverseProvisioningRequest,
    ValidationOut,
)
from provisioner.api.security import (
    VALIDATE_ACCESS,
    AdminDep,
    AuthenticatedRoute,
    DeployInputDep,
)
from provisioner.auth.scopes import Principal

router = APIRouter(prefix="/v1", route_class=AuthenticatedRoute, responses=problems(401, 403))


@router.post(
    "/validations",
    response_model=ValidationOut,
    responses=problems(400, 413, 415, 422),
    openapi_extra=DESCRIPTOR_BODY,
    summary="Validate a descriptor as a deploy would: the service's checks, the policies and "
    "every component's Tech Adapter (nothing is deployed)",
)
async def validate(
    principal: Annotated[Principal, VALIDATE_ACCESS],
    given: DeployInputDep,
    adapter_calls: AdapterCallsDep,
) -> ValidationOut:
    """A descriptor that breaks the service's own rules is 422; otherwise 200 with every
    adapter's verdict and every policy message (``valid`` is false if any would refuse it)."""
    report = await adapter_calls.report(
        given.document,
        environment=given.environment,
        document_size=given.size,
        principal=principal.name,
        warnings=given.warnings,
    )
    return ValidationOut.model_validate(
        {
            "valid": report.valid,
            "environment": report.environment,
            "components": report.components,
            "denials": report.denials,
            "warnings": report.warnings,
        }
    )


@router.post(
    "/reverse-provisioning",
    response_model=ReverseProvisioningOut,
    responses=problems(422, 502),
    summary="Run a reverse provisioning through a Tech Adapter",
)
async def reverse_provision(
    body: ReverseProvisioningRequest, principal: AdminDep, adapter_calls: AdapterCallsDep
) -> ReverseProvisioningOut:
    outcome = await adapter_calls.reverse_provision(
        principal=principal.name,
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
