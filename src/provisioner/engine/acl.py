"""What an ACL update sends its Tech Adapter, as real adapters read it.

``/v1/updateacl`` carries the refs and the ``provisionInfo`` of the component's last provision:
``request``, the COMPONENT_DESCRIPTOR YAML it was provisioned with (``dataProduct`` +
``componentIdToProvision``), and ``result``, the JSON of its last ProvisioningStatus (adapters
such as the Terraform one read ``info.privateInfo.outputs`` from it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from provisioner.domain.rendering import DescriptorTexts
from provisioner.engine.ports import ClaimedOperation, ComponentState, descriptor_source


@dataclass(frozen=True, slots=True)
class AclCall:
    """The body of one ``/v1/updateacl`` call."""

    refs: list[str]
    request: str
    result: str


def acl_call(claimed: ClaimedOperation, component: ComponentState) -> AclCall:
    """The ACL update of ``claimed`` (an UPDATE_ACL operation) for ``component``.

    Raises ``LookupError`` when the descriptor the component was provisioned with is gone.
    """
    source = descriptor_source(claimed.header, component)
    document = claimed.documents.get(source) if source else None
    if document is None:
        raise LookupError(f"the descriptor of {component.component_id!r} is not available")
    # ProvisioningStatus requires ``result`` (the adapter's message), which is not stored:
    # present and empty, so that an adapter reading it strictly accepts it.
    result = {
        "status": "COMPLETED",
        "result": "",
        "info": {
            "publicInfo": component.public_info or {},
            "privateInfo": component.private_info or {},
        },
        "logs": component.logs or [],
    }
    return AclCall(
        refs=list(claimed.header.refs or ()),
        request=DescriptorTexts(document).component(component.component_id).text,
        result=json.dumps(result, ensure_ascii=False),
    )
