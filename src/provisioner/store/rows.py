"""Conversions between table rows and the engine's state objects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from provisioner.domain.status import ComponentStatus, OperationType, TaskAction, TaskStatus
from provisioner.engine.ports import ComponentState, TaskState


def task_state(row: Row[Any]) -> TaskState:
    return TaskState(
        component_id=row.component_id,
        action=TaskAction(row.action),
        status=TaskStatus(row.status),
        depends_on=tuple(row.depends_on or ()),
        infrastructure_template_id=row.infrastructure_template_id,
        is_system=row.is_system,
        attempts=row.attempts,
        token=row.token,
        started_at=row.started_at,
        finished_at=row.finished_at,
        public_info=row.public_info,
        private_info=row.private_info,
        logs=row.logs,
        error=row.error,
    )


def task_values(task: TaskState) -> dict[str, Any]:
    """The mutable columns of a task row."""
    return {
        "status": task.status.value,
        "attempts": task.attempts,
        "token": task.token,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "public_info": task.public_info,
        "private_info": task.private_info,
        "logs": task.logs,
        "error": task.error,
    }


def component_state(row: Row[Any]) -> ComponentState:
    return ComponentState(
        component_id=row.component_id,
        is_system=row.is_system,
        status=ComponentStatus(row.status),
        version=row.version,
        infrastructure_template_id=row.infrastructure_template_id,
        depends_on=tuple(row.depends_on or ()),
        last_sent_operation_id=row.last_sent_operation_id,
        last_provisioned_operation_id=row.last_provisioned_operation_id,
        public_info=row.public_info,
        private_info=row.private_info,
        logs=row.logs,
        last_operation_id=row.last_operation_id,
        last_operation_type=OperationType(row.last_operation_type)
        if row.last_operation_type
        else None,
        last_task_status=TaskStatus(row.last_task_status) if row.last_task_status else None,
        last_finished_at=row.last_finished_at,
    )


def component_values(component: ComponentState) -> dict[str, Any]:
    """The mutable columns of a component row."""
    return {
        "status": component.status.value,
        "version": component.version,
        "infrastructure_template_id": component.infrastructure_template_id,
        "depends_on": list(component.depends_on),
        "last_sent_operation_id": component.last_sent_operation_id,
        "last_provisioned_operation_id": component.last_provisioned_operation_id,
        "public_info": component.public_info,
        "private_info": component.private_info,
        "logs": component.logs,
        "last_operation_id": component.last_operation_id,
        "last_operation_type": component.last_operation_type.value
        if component.last_operation_type
        else None,
        "last_task_status": component.last_task_status.value
        if component.last_task_status
        else None,
        "last_finished_at": component.last_finished_at,
    }
