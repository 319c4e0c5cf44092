"""ACL updates and overrides in the SQL store, on SQLite and PostgreSQL: an UPDATE_ACL abandoned
after an internal error leaves its component and release as they were; an OVERRIDE is refused
unless its component is CORRUPT and the release is free."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, insert, update

from provisioner.domain.plan import Plan, Step
from provisioner.domain.status import (
    ComponentStatus,
    OperationStatus,
    OperationType,
    ReleaseStatus,
    TaskAction,
    TaskStatus,
)
from provisioner.engine.ports import Fence, OperationHeader, StateWrite
from provisioner.errors import ConflictError, OperationActiveError
from provisioner.service.ids import new_operation_id
from provisioner.store.database import Database
from provisioner.store.models import components, operations, releases
from provisioner.store.operations import SqlOperationStore
from provisioner.store.queries import Queries
from provisioner.store.submissions import NewOperation, Submissions
from tests.integration.test_store import LEASE, database, database_url, submit
from tests.support import MOCK

__all__ = ["database", "database_url"]  # the fixtures, shared with test_store


def header(unit_id: str, type_: OperationType, **facts: object) -> OperationHeader:
    return OperationHeader(
        id=new_operation_id(),
        type=type_,
        deployment_unit_id=unit_id,
        environment="development",
        version="1.0.0",
        remove_data=False,
        created_at=datetime.now(UTC),
        **facts,  # type: ignore[arg-type]
    )


async def a_release(database: Database, *, b: ComponentStatus) -> tuple[str, str]:
    """A new unit's deploy (a, b) as ended: a DEPLOYED, b as given, the release settled as the
    deploy left it. Returns the unit id and the deploy's id."""
    unit_id = f"urn:acl:{uuid.uuid4().hex[:8]}"
    deploy = await submit(database, unit_id)
    status = ReleaseStatus.DEPLOYED if b is ComponentStatus.DEPLOYED else ReleaseStatus.CORRUPT

    def work(conn: Connection) -> None:
        conn.execute(
            update(operations)
            .where(operations.c.id == deploy.id)
            .values(status=OperationStatus.SUCCEEDED)
        )
        conn.execute(
            insert(components),
            [
                {
                    "deployment_unit_id": unit_id,
                    "environment": "development",
                    "component_id": component_id,
                    "is_system": component_id == unit_id,
                    "member": True,
                    "status": b if component_id == "b" else ComponentStatus.DEPLOYED,
                    "infrastructure_template_id": None if component_id == unit_id else MOCK,
                    "depends_on": [],
                    "last_provisioned_operation_id": deploy.id,
                    "updated_at": datetime.now(UTC),
                }
                for component_id in (unit_id, "a", "b")
            ],
        )
        conn.execute(
            update(releases).where(releases.c.deployment_unit_id == unit_id).values(status=status)
        )

    await database.transaction(work)
    return unit_id, deploy.id


async def test_an_acl_update_abandoned_mid_call_corrupts_nothing(database: Database) -> None:
    """An internal error while the ACL call may have been sent: the operation ends FAILED, the
    component stays DEPLOYED with its deploy as its latest provisioning, the release DEPLOYED."""
    unit_id, deploy_id = await a_release(database, b=ComponentStatus.DEPLOYED)
    acl = NewOperation(
        header=header(unit_id, OperationType.UPDATE_ACL, refs=("user:a",)),
        plan=Plan((Step("a", TaskAction.UPDATE_ACL, (), MOCK, False),)),
        requested_components=("a",),
    )
    await Submissions(database).submit(acl)
    store = SqlOperationStore(database)
    claims = await store.claim(
        owner="r/a", replica_id="r", limit=100, lease_seconds=LEASE, now=datetime.now(UTC)
    )
    (claimed,) = [item for item in claims if item.header.id == acl.header.id]
    assert claimed.header.refs == ("user:a",)
    running = replace(claimed.tasks[0], status=TaskStatus.RUNNING, attempts=1)
    fence = Fence(claimed.header.id, claimed.fence.token)
    await store.apply([StateWrite(fence, claimed.header, tasks=[running])], lease_seconds=LEASE)
    await store.apply(
        [StateWrite(fence, claimed.header, abandon="internal error: boom")], lease_seconds=LEASE
    )

    queries = Queries(database)
    operation = await queries.operation(acl.header.id)
    assert operation is not None
    assert operation.status is OperationStatus.FAILED
    assert operation.tasks[0].status is TaskStatus.FAILED
    release = await queries.release(unit_id, "development")
    assert release is not None
    assert release.status is ReleaseStatus.DEPLOYED
    (a,) = [c for c in release.components if c.component_id == "a"]
    assert a.status is ComponentStatus.DEPLOYED
    assert a.last_operation_id != acl.header.id
    assert a.last_provisioned_operation_id == deploy_id
    assert a.refs is None


@pytest.mark.parametrize("b", [ComponentStatus.DEPLOYED, ComponentStatus.CORRUPT])
async def test_an_override_needs_a_corrupt_component_and_settles_the_release(
    database: Database, b: ComponentStatus
) -> None:
    unit_id, _ = await a_release(database, b=b)
    submissions = Submissions(database)
    override = header(unit_id, OperationType.OVERRIDE, reason="fixed by hand")
    if b is not ComponentStatus.CORRUPT:
        with pytest.raises(ConflictError):
            await submissions.override(override, "b", ComponentStatus.DEPLOYED)
        assert await Queries(database).operation(override.id) is None
        return
    await submissions.override(override, "b", ComponentStatus.DEPLOYED)
    queries = Queries(database)
    release = await queries.release(unit_id, "development")
    assert release is not None
    assert release.status is ReleaseStatus.DEPLOYED
    assert release.last_operation_id == override.id
    operation = await queries.operation(override.id)
    assert operation is not None
    assert (operation.status, operation.reason) == (OperationStatus.SUCCEEDED, "fixed by hand")


async def test_an_override_is_refused_while_an_operation_runs(database: Database) -> None:
    unit_id, _ = await a_release(database, b=ComponentStatus.CORRUPT)
    active = await submit(database, unit_id)
    with pytest.raises(OperationActiveError) as refused:
        await Submissions(database).override(
            header(unit_id, OperationType.OVERRIDE, reason="x"), "b", ComponentStatus.DEPLOYED
        )
    assert refused.value.operation_id == active.id
