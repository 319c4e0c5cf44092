"""The REST API's routes, one module per area."""

from __future__ import annotations

from fastapi import APIRouter

from provisioner.api.routes import (
    adapters,
    components,
    observability,
    operations,
    publications,
    releases,
    ui,
)

router = APIRouter()
router.include_router(operations.router)
router.include_router(releases.router)
router.include_router(adapters.router)
router.include_router(components.router)
router.include_router(ui.router)
router.include_router(publications.router)
router.include_router(observability.router)
