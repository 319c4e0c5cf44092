"""What a dry run says a step would change (``provisioner.domain.changes``), as a table."""

from __future__ import annotations

import pytest

from provisioner.domain.changes import Change, change_of, own_part
from provisioner.domain.status import ComponentStatus, TaskAction

A = TaskAction
C = ComponentStatus


@pytest.mark.parametrize(
    ("action", "current", "same_version", "same_content", "change"),
    [
        (A.UNPROVISION, C.DEPLOYED, True, True, Change.DELETE),
        (A.UNPROVISION, C.CORRUPT, False, False, Change.DELETE),
        (A.PROVISION, C.NOT_DEPLOYED, False, False, Change.CREATE),
        (A.PROVISION, C.NOT_DEPLOYED, True, True, Change.CREATE),
        (A.PROVISION, C.DEPLOYED, True, True, Change.UNCHANGED),
        (A.PROVISION, C.DEPLOYED, False, True, Change.UPDATE),
        (A.PROVISION, C.DEPLOYED, True, False, Change.UPDATE),
        # Whatever its descriptor, a component whose last operation went wrong is redone.
        (A.PROVISION, C.CORRUPT, True, True, Change.UPDATE),
        (A.PROVISION, C.IN_PROGRESS, True, True, Change.UPDATE),
    ],
)
def test_the_change_of_a_step(
    action: TaskAction,
    current: ComponentStatus,
    same_version: bool,
    same_content: bool,
    change: Change,
) -> None:
    """DELETE for unprovisions; CREATE when not deployed; UNCHANGED only when deployed, at the
    same version, with the same content; UPDATE otherwise."""
    assert (
        change_of(action, current, same_version=same_version, same_content=same_content) is change
    )


DOCUMENT = {
    "id": "u",
    "version": "1.0.0",
    "components": [{"id": "a", "specific": {"x": 1}}, {"id": "b"}, "not a mapping"],
}


def test_a_component_s_own_part_is_its_entry() -> None:
    assert own_part(DOCUMENT, "a", is_system=False) == {"id": "a", "specific": {"x": 1}}
    assert own_part(DOCUMENT, "missing", is_system=False) is None
    assert own_part({"components": "oops"}, "a", is_system=False) is None


def test_the_system_s_own_part_is_the_unit_without_its_components() -> None:
    """A change to a component is not a change to the unit itself."""
    assert own_part(DOCUMENT, "u", is_system=True) == {"id": "u", "version": "1.0.0"}
    changed = {**DOCUMENT, "components": []}
    assert own_part(changed, "u", is_system=True) == own_part(DOCUMENT, "u", is_system=True)
