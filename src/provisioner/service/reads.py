"""What users and pipelines can see: operations, their events, releases and components."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.domain.publication import public_descriptor
from provisioner.domain.status import OperationStatus, ReleaseStatus
from provisioner.errors import NotFoundError
from provisioner.service.ports import ReadStore
from provisioner.store.views import (
    ComponentView,
    EventView,
    OperationView,
    Page,
    PublicationView,
    ReleaseView,
)


class Reads:
    """Read use cases; a missing thing is ``NotFoundError``."""

    def __init__(self, store: ReadStore) -> None:
        self._store = store

    async def operation(self, operation_id: str) -> OperationView:
        view = await self._store.operation(operation_id)
        if view is None:
            raise NotFoundError(f"operation {operation_id} does not exist")
        return view

    async def operations(
        self,
        *,
        deployment_unit_id: str | None = None,
        environment: str | None = None,
        status: OperationStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[OperationView]:
        return await self._store.operations(
            deployment_unit_id=deployment_unit_id,
            environment=environment,
            status=status,
            limit=limit,
            cursor=cursor,
        )

    async def events(
        self, operation_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[EventView]:
        events = await self._store.events(operation_id, after=after, limit=limit)
        if not events:  # events exist only of an operation that does: else, is there one?
            await self.operation(operation_id)
        return events

    async def release(self, deployment_unit_id: str, environment: str) -> ReleaseView:
        view = await self._store.release(deployment_unit_id, environment)
        if view is None:
            raise NotFoundError(
                f"no operation was ever submitted for {deployment_unit_id!r} in {environment!r}"
            )
        return view

    async def component(
        self, deployment_unit_id: str, environment: str, component_id: str
    ) -> ComponentView:
        release = await self.release(deployment_unit_id, environment)
        for component in release.components:
            if component.component_id == component_id:
                return component
        raise NotFoundError(
            f"{deployment_unit_id!r} has no component {component_id!r} in {environment!r}"
        )

    async def releases(
        self,
        *,
        environment: str | None = None,
        status: ReleaseStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ReleaseView]:
        return await self._store.releases(
            environment=environment, status=status, limit=limit, cursor=cursor
        )

    async def publications(
        self,
        deployment_unit_id: str,
        environment: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[PublicationView]:
        """The release's Market Plane events and their deliveries (attempts, last error)."""
        page = await self._store.publications(
            deployment_unit_id, environment, limit=limit, cursor=cursor
        )
        if not page.items:  # publications exist only of a release that does: else, is there one?
            await self.release(deployment_unit_id, environment)
        return page

    async def document(self, operation_id: str) -> Mapping[str, Any] | None:
        """The unit descriptor an operation deployed, as stored (``privateInfo`` included:
        for what is sent to adapters, never for what is shown)."""
        return await self._store.document(operation_id)

    async def deployed_descriptor(self, release: ReleaseView) -> dict[str, Any] | None:
        """The release's last deployed descriptor with public info only (no privateInfo)."""
        if release.descriptor_operation_id is None:
            return None
        document = await self._store.document(release.descriptor_operation_id)
        if document is None:
            return None
        return _public_descriptor(document, release)


def _public_descriptor(document: Mapping[str, Any], release: ReleaseView) -> dict[str, Any]:
    """The descriptor with each member's public info and no ``privateInfo`` anywhere."""
    public_info = {view.component_id: view.public_info for view in release.components}
    public_info[release.deployment_unit_id] = release.public_info
    return public_descriptor(document, public_info)
