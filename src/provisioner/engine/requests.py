"""Builds the Tech Adapter requests of one operation, serialising each descriptor once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from provisioner.domain.privacy import may_receive_private_info
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
    ComponentState,
    TaskState,
    descriptor_source,
)

# The current state of a component of the release, by id (None: it has none).
StateLookup = Callable[[str], ComponentState | None]


class RequestBuilder:
    """The requests and descriptor facts an operation's tasks need.

    Construction does the expensive part (the enriched descriptors and the shared YAML of every
    descriptor involved), so it is meant to run in a worker thread for large units.

    ``latestEnrichedDescriptor`` carries ``privateInfo`` only of the components provisioned by
    the receiving adapter's own template, unless ``share_private_info``; one text is made per
    set of components whose private info it keeps (one in all when there is none to hide).
    """

    def __init__(
        self,
        claimed: ClaimedOperation,
        *,
        share_private_info: bool = False,
        calling: Collection[str] | None = None,
    ) -> None:
        """``calling``: the components whose adapter this run calls (None: every component
        with a template); only their texts are serialised now, the others' on first use."""
        self._header = claimed.header
        self._components = claimed.components
        self._documents = claimed.documents
        self._share = share_private_info
        self._texts = {op_id: DescriptorTexts(doc) for op_id, doc in claimed.documents.items()}
        self._by_id = {op_id: _components_by_id(doc) for op_id, doc in claimed.documents.items()}
        self._enriched_base = self._enriched_document(claimed)
        self._private = {cid for cid, state in claimed.components.items() if state.private_info}
        self._enriched: dict[frozenset[str], SharedText] = {}
        self._enriched_for: dict[str | None, SharedText | None] = {}
        for task in claimed.tasks:
            if task.infrastructure_template_id is not None and (
                calling is None or task.component_id in calling
            ):
                # Serialise the shared texts now, off the event loop. (A unit-level template
                # with no adapter, as in most real descriptors, makes no call: its text, a
                # serialisation of the whole unit, would never be sent.)
                dependents = bool(self.provisioned_facts(task)[1])
                texts = self._texts[self.document_operation(task)]
                texts.prepare(system=task.is_system, dependents=dependents)
                self.latest_enriched(task.infrastructure_template_id)

    @staticmethod
    def _enriched_document(claimed: ClaimedOperation) -> Mapping[str, Any] | None:
        base_id = claimed.release_descriptor_operation_id or (
            claimed.header.id if claimed.header.type is OperationType.DEPLOY else None
        )
        if base_id is None or base_id not in claimed.documents:
            return None
        return claimed.documents[base_id]

    def latest_enriched(self, template: str | None) -> SharedText | None:
        """The ``latestEnrichedDescriptor`` sent to the adapter of ``template``."""
        if template not in self._enriched_for:
            self._enriched_for[template] = self._build_enriched(template)
        return self._enriched_for[template]

    def _build_enriched(self, template: str | None) -> SharedText | None:
        if self._enriched_base is None:
            return None
        kept = frozenset(
            component_id
            for component_id in self._private
            if may_receive_private_info(
                template,
                self._components[component_id].infrastructure_template_id,
                share=self._share,
            )
        )
        text = self._enriched.get(kept)
        if text is None:
            records = {
                component_id: ProvisioningRecord(
                    public_info=state.public_info,
                    private_info=state.private_info if component_id in kept else None,
                    operation=state.last_operation_type,
                    status=state.last_task_status,
                )
                for component_id, state in self._components.items()
            }
            text = SharedText(to_yaml(enrich_descriptor(self._enriched_base, records)))
            text.json_parts()  # encode it now (off the event loop, when built at construction)
            self._enriched[kept] = text
        return text

    def document_operation(self, task: TaskState) -> str:
        """The operation whose descriptor this task sends (``descriptor_source``)."""
        op_id = descriptor_source(self._header, self._components[task.component_id])
        if op_id is None:
            raise LookupError(f"no descriptor was ever sent for {task.component_id!r}")
        return op_id

    def request(self, task: TaskState, states: StateLookup) -> AdapterRequest:
        """The provision or unprovision request of ``task``; ``states`` gives the current
        state of its dependencies (provisioned earlier in this operation, or before)."""
        texts = self._texts[self.document_operation(task)]
        enriched = self.latest_enriched(task.infrastructure_template_id)
        if task.is_system:
            return AdapterRequest(
                action=task.action,
                descriptor_kind="DATAPRODUCT_DESCRIPTOR",
                descriptor=texts.unit,
                latest_enriched_descriptor=enriched,
                remove_data=self._header.remove_data,
            )
        return AdapterRequest(
            action=task.action,
            descriptor_kind="COMPONENT_DESCRIPTOR",
            descriptor=texts.component(task.component_id, self.dependency_info(task, states)),
            latest_enriched_descriptor=enriched,
            remove_data=self._header.remove_data,
        )

    def dependency_info(self, task: TaskState, states: StateLookup) -> dict[str, Any]:
        """The ``info`` each component ``task``'s component depends on carries in its request:
        the public and private info of its latest provision, for those ever provisioned."""
        found: dict[str, Any] = {}
        for dependency_id in self.provisioned_facts(task)[1]:
            state = states(dependency_id)
            if state is None or state.last_provisioned_operation_id is None:
                continue
            found[dependency_id] = {
                "publicInfo": dict(state.public_info or {}),
                "privateInfo": dict(state.private_info or {}),
            }
        return found

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
