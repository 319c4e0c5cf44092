"""Builds the Tech Adapter requests of one operation, serialising each descriptor once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.domain.rendering import (
    DescriptorTexts,
    ProvisioningRecord,
    SharedText,
    enrich_descriptor,
    to_yaml,
)
from provisioner.domain.status import OperationType
from provisioner.engine.ports import (
    AdapterRequest,
    ClaimedOperation,
    TaskState,
    descriptor_source,
)


class RequestBuilder:
    """The requests and descriptor facts an operation's tasks need.

    Construction does the expensive part (the enriched descriptor and the shared YAML of every
    descriptor involved), so it is meant to run in a worker thread for large units.
    """

    def __init__(self, claimed: ClaimedOperation) -> None:
        self._header = claimed.header
        self._components = claimed.components
        self._documents = claimed.documents
        self._texts = {op_id: DescriptorTexts(doc) for op_id, doc in claimed.documents.items()}
        self._by_id = {op_id: _components_by_id(doc) for op_id, doc in claimed.documents.items()}
        self._enriched = self._build_enriched(claimed)
        for task in claimed.tasks:
            if task.infrastructure_template_id is not None:
                # Serialise the shared texts now, off the event loop.
                self._texts[self.document_operation(task)].prepare(system=task.is_system)

    def _build_enriched(self, claimed: ClaimedOperation) -> SharedText | None:
        base_id = claimed.release_descriptor_operation_id or (
            claimed.header.id if claimed.header.type is OperationType.DEPLOY else None
        )
        if base_id is None or base_id not in claimed.documents:
            return None
        records = {
            component_id: ProvisioningRecord(
                public_info=state.public_info,
                private_info=state.private_info,
                operation=state.last_operation_type,
                status=state.last_task_status,
            )
            for component_id, state in claimed.components.items()
        }
        text = SharedText(to_yaml(enrich_descriptor(claimed.documents[base_id], records)))
        text.json_parts()  # encode it now, off the event loop
        return text

    def document_operation(self, task: TaskState) -> str:
        """The operation whose descriptor this task sends (``descriptor_source``)."""
        op_id = descriptor_source(self._header, self._components[task.component_id])
        if op_id is None:
            raise LookupError(f"no descriptor was ever sent for {task.component_id!r}")
        return op_id

    def request(self, task: TaskState) -> AdapterRequest:
        """The provision or unprovision request of ``task``."""
        texts = self._texts[self.document_operation(task)]
        if task.is_system:
            return AdapterRequest(
                action=task.action,
                descriptor_kind="DATAPRODUCT_DESCRIPTOR",
                descriptor=texts.unit,
                latest_enriched_descriptor=self._enriched,
                remove_data=self._header.remove_data,
            )
        return AdapterRequest(
            action=task.action,
            descriptor_kind="COMPONENT_DESCRIPTOR",
            descriptor=texts.component(task.component_id),
            latest_enriched_descriptor=self._enriched,
            remove_data=self._header.remove_data,
        )

    def validation_request(self, task: TaskState) -> AdapterRequest:
        """What ``task``'s adapter validates before a deploy provisions anything: the
        descriptor alone, as ``/v1/validations`` sends it (the Tech Adapter API gives
        validation no dependency information and no enriched descriptor)."""
        texts = self._texts[self.document_operation(task)]
        return AdapterRequest(
            action=task.action,
            descriptor_kind="DATAPRODUCT_DESCRIPTOR" if task.is_system else "COMPONENT_DESCRIPTOR",
            descriptor=texts.unit if task.is_system else texts.component(task.component_id),
            latest_enriched_descriptor=None,
            remove_data=False,
        )

    def member_ids(self) -> list[str] | None:
        """For a deploy: the unit and every component of its descriptor, the release's
        members once it runs. Undeploys leave membership as it is."""
        if self._header.type is not OperationType.DEPLOY:
            return None
        return [self._header.deployment_unit_id, *self._by_id[self._header.id]]

    def provisioned_facts(self, task: TaskState) -> tuple[str | None, tuple[str, ...]]:
        """The version and ``dependsOn`` of the component as described in its descriptor."""
        op_id = self.document_operation(task)
        if task.is_system:
            version = self._documents[op_id].get("version")
            return (version if isinstance(version, str) else None), ()
        component = self._by_id[op_id].get(task.component_id, {})
        version = component.get("version")
        depends_on = component.get("dependsOn")
        return (
            version if isinstance(version, str) else None,
            tuple(dep for dep in depends_on if isinstance(dep, str))
            if isinstance(depends_on, list)
            else (),
        )


def _components_by_id(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    components = document.get("components")
    if not isinstance(components, list):
        return {}
    return {
        component["id"]: component
        for component in components
        if isinstance(component, dict) and isinstance(component.get("id"), str)
    }
