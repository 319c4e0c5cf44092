"""The group-commit recorder: order, batching, retries while the database is away."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import structlog

from provisioner.domain.status import OperationType
from provisioner.engine.ports import Event, Fence, OperationHeader, StateWrite
from provisioner.engine.recorder import Recorder
from provisioner.errors import DatabaseUnavailableError, LeaseLostError
from tests.unit.fakes import T0, FakeStore


def write(operation_id: str, marker: str) -> StateWrite:
    """A write whose only content is an event naming it."""
    header = OperationHeader(operation_id, OperationType.DEPLOY, "u", "dev", "1", False, T0)
    return StateWrite(
        fence=Fence(operation_id, 1), header=header, events=[Event(None, None, marker, T0)]
    )


def markers(store: FakeStore) -> list[str]:
    return [w.events[0].new_status for w in store.writes]


async def test_writes_that_arrive_together_share_one_transaction() -> None:
    """Writes queued while the writer is busy are applied in one batch, in order."""
    store = FakeStore()
    recorder = Recorder(store, lease_seconds=30)
    recorder.start()
    writes = [write("op", f"w{i}") for i in range(20)]
    await asyncio.gather(*(recorder.write(w) for w in writes))
    await recorder.close()
    assert markers(store) == [f"w{i}" for i in range(20)]
    assert len(store.applies) < 20


async def test_an_unreachable_database_is_retried_until_it_answers() -> None:
    """DatabaseUnavailableError keeps the batch and retries; the writer sees success."""
    store = FakeStore()
    store.failures = [DatabaseUnavailableError("down"), DatabaseUnavailableError("still down")]
    recorder = Recorder(store, lease_seconds=30, max_backoff_seconds=0.01)
    recorder.start()
    await recorder.write(write("op", "kept"))
    await recorder.close()
    assert markers(store) == ["kept"]


async def test_a_failed_fence_raises_lease_lost_in_its_writer_only() -> None:
    store = FakeStore()
    store.lost.add("theirs")
    recorder = Recorder(store, lease_seconds=30)
    recorder.start()
    results = await asyncio.gather(
        recorder.write(write("mine", "a")),
        recorder.write(write("theirs", "b")),
        return_exceptions=True,
    )
    await recorder.close()
    assert results[0] is None
    assert isinstance(results[1], LeaseLostError)


async def test_other_errors_reach_the_writer_and_the_recorder_keeps_working() -> None:
    store = FakeStore()
    store.failures = [RuntimeError("constraint")]
    recorder = Recorder(store, lease_seconds=30)
    recorder.start()
    with pytest.raises(RuntimeError, match="constraint"):
        await recorder.write(write("op", "first"))
    await recorder.write(write("op", "second"))
    await recorder.close()
    assert markers(store) == ["second"]


async def test_a_write_the_database_refuses_fails_alone() -> None:
    """One operation's unstorable data must not fail its neighbours in the same batch."""

    class PickyStore(FakeStore):
        async def apply(self, writes: Sequence[StateWrite], *, lease_seconds: float) -> set[str]:
            if any(w.fence.operation_id == "bad" for w in writes):
                raise RuntimeError("value too long")
            return await super().apply(writes, lease_seconds=lease_seconds)

    store = PickyStore()
    recorder = Recorder(store, lease_seconds=30)
    recorder.start()
    results = await asyncio.gather(
        recorder.write(write("good", "kept")),
        recorder.write(write("bad", "refused")),
        recorder.write(write("other", "kept too")),
        return_exceptions=True,
    )
    await recorder.close()
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert markers(store) == ["kept", "kept too"]


async def test_a_refused_write_is_logged_without_the_database_s_message() -> None:
    """A database's message may quote the refused row (PostgreSQL: "Failing row contains
    (...)"), privateInfo with it: the log line names the error's type, with no traceback."""
    store = FakeStore()
    store.failures = [RuntimeError('Failing row contains (null, {"privateInfo": "s3cret"})')]
    recorder = Recorder(store, lease_seconds=30)
    recorder.start()
    with structlog.testing.capture_logs() as logs, pytest.raises(RuntimeError):
        await recorder.write(write("op", "refused"))
    await recorder.close()

    [line] = [entry for entry in logs if entry["event"] == "state_write_failed"]
    assert line["error_type"] == "RuntimeError"
    assert "exc_info" not in line
    assert "s3cret" not in repr(logs)
