"""What a planned step would change, for dry runs: the rule of ``CREATE``, ``UPDATE``,
``UNCHANGED`` and ``DELETE``.

- ``DELETE``: the step unprovisions the component (an undeploy).
- ``CREATE``: the component is not deployed (it never was, or was undeployed).
- ``UNCHANGED``: the component is ``DEPLOYED``, at the version the descriptor asks for, and its
  own part of the descriptor (its entry in ``components``; for the system step, the unit's
  fields other than ``components``) is what it was last provisioned with. The step still runs
  (provisioning is declarative and idempotent), but the adapter is asked for nothing new.
- ``UPDATE``: anything else: a deployed component with another version or other content, or one
  whose last operation left it ``CORRUPT`` or ``IN_PROGRESS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from provisioner.domain.status import ComponentStatus, TaskAction


class Change(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    UNCHANGED = "UNCHANGED"
    DELETE = "DELETE"


def change_of(
    action: TaskAction,
    current: ComponentStatus,
    *,
    same_version: bool,
    same_content: bool,
) -> Change:
    """What running a step of ``action`` on a component now ``current`` would change."""
    if action is TaskAction.UNPROVISION:
        return Change.DELETE
    if current is ComponentStatus.NOT_DEPLOYED:
        return Change.CREATE
    if current is ComponentStatus.DEPLOYED and same_version and same_content:
        return Change.UNCHANGED
    return Change.UPDATE


def own_part(document: Mapping[str, Any], component_id: str, *, is_system: bool) -> object:
    """What of a unit descriptor belongs to one component (or, ``is_system``, to the unit):
    the value compared to decide whether it is ``UNCHANGED``."""
    if is_system:
        return {key: value for key, value in document.items() if key != "components"}
    components = document.get("components")
    if not isinstance(components, list):
        return None
    for component in components:
        if isinstance(component, dict) and component.get("id") == component_id:
            return component
    return None
