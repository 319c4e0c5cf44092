"""The Tech Adapter logic of the mock, independent of the web framework.

Every handler takes the raw body (or a token) and the call's log record, fills in the record as it
learns what the call is about, and returns an `Answer`. An async operation's first final answer is
stored with it, so that later polls of the same token get the same answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from uuid import uuid4

from provisioner.mockadapter import answers
from provisioner.mockadapter.answers import Answer
from provisioner.mockadapter.behaviour import (
    Action,
    CallFailure,
    FailHow,
    MockBehaviour,
    Mode,
    ServerDefaults,
    ValidationOutcome,
    parse_behaviour,
)
from provisioner.mockadapter.descriptors import (
    DescriptorKind,
    DescriptorReader,
    Target,
    unreadable_acl_request,
)
from provisioner.mockadapter.errors import InvalidRequestError
from provisioner.mockadapter.payloads import (
    parse_provisioning_request,
    parse_reverse_provisioning_request,
    parse_update_acl_request,
    parse_validation_request,
)
from provisioner.mockadapter.state import (
    AclJob,
    CallLog,
    CallRecord,
    ComponentBook,
    Gates,
    Operation,
    ValidationJob,
)


class MockTechAdapter:
    """A Tech Adapter 2.2.0 that does nothing but what each component's `specific.mock` asks."""

    def __init__(
        self,
        *,
        defaults: ServerDefaults,
        clock: Callable[[], float] = time.monotonic,
        reader: DescriptorReader | None = None,
    ) -> None:
        self.defaults = defaults
        self.calls = CallLog()
        self.components = ComponentBook()
        self.gates = Gates()
        self.reader = reader if reader is not None else DescriptorReader()
        self._clock = clock
        self._operations: dict[str, Operation] = {}
        self._validations: dict[str, ValidationJob] = {}
        self._acl_jobs: dict[str, AclJob] = {}
        # The last provision/unprovision requests in full, for tests that check what was sent.
        # Bounded: descriptors of large units are megabytes each.
        self.requests: deque[dict[str, Any]] = deque(maxlen=32)

    async def provision(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v1/provision."""
        return await self._deploy(Action.PROVISION, body, call)

    async def unprovision(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v1/unprovision."""
        return await self._deploy(Action.UNPROVISION, body, call)

    async def _deploy(self, action: Action, body: bytes, call: CallRecord) -> Answer:
        request = parse_provisioning_request(body)
        call.descriptor_kind, call.remove_data = request.kind.value, request.remove_data
        target = self.reader.read(request.kind, request.descriptor)
        call.component_id, call.dependency_info = target.component_id, target.dependency_info
        self.requests.append(
            {
                "seq": call.seq,
                "action": action.value,
                "componentId": target.component_id,
                "descriptorKind": request.kind.value,
                "removeData": request.remove_data,
                "descriptor": request.descriptor,
                "latestEnrichedDescriptor": request.latest_enriched_descriptor,
                "dependencyInfo": target.dependency_info,
            }
        )
        record = self.components.get(target.component_id)
        record.receive(call.seq, action, target.dependency_info)
        behaviour = parse_behaviour(target.component, self.defaults)
        if record.take_transient_error(action, behaviour.transient_errors):
            message = f"{action} of {target.component_id}: transient failure, retry"
            return answers.system_error(message, status_code=503)
        operation = Operation(
            action,
            target.component_id,
            request.kind.value,
            request.remove_data,
            behaviour,
            self._clock(),
        )
        if behaviour.mode is Mode.ASYNC:
            return self._start(operation, call)
        return await self._run_sync(operation)

    def _start(self, operation: Operation, call: CallRecord) -> Answer:
        call.token = token = uuid4().hex
        self._operations[token] = operation
        self.calls.operation_started()
        return answers.token_answer(token, operation.behaviour.token_format)

    async def _run_sync(self, operation: Operation) -> Answer:
        self.calls.operation_started()
        try:
            if operation.behaviour.gate is not None:
                await self.gates.wait(operation.behaviour.gate)
            if operation.behaviour.latency_ms > 0:
                await asyncio.sleep(operation.behaviour.latency_ms / 1000)
            return self._conclude(operation)
        finally:
            self.calls.operation_ended()

    async def status(self, token: str, call: CallRecord) -> Answer:
        """GET /v1/provision/{token}/status, for provision, unprovision and updateacl tokens."""
        operation = self._operations.get(token)
        if operation is None:
            return self._acl_status(token, call)
        call.component_id, call.descriptor_kind = operation.component_id, operation.descriptor_kind
        call.remove_data = operation.remove_data
        if operation.poll_errors_answered < operation.behaviour.poll_errors:
            operation.poll_errors_answered += 1
            return answers.system_error("status temporarily unavailable", status_code=503)
        if operation.final is None:
            if self._still_running(operation):
                operation.running_answers += 1
                return answers.running(operation.action, operation.component_id)
            operation.final = self._conclude(operation)
            self.calls.operation_ended()
        return operation.final

    def _still_running(self, operation: Operation) -> bool:
        behaviour = operation.behaviour
        elapsed_ms = (self._clock() - operation.started_at) * 1000
        return (
            behaviour.never_finish
            or (behaviour.gate is not None and not self.gates.is_open(behaviour.gate))
            or operation.running_answers < behaviour.polls
            or elapsed_ms < behaviour.latency_ms
        )

    def _conclude(self, operation: Operation) -> Answer:
        """The final answer of an operation; a success is recorded as such."""
        behaviour = operation.behaviour
        if behaviour.garbage:
            return answers.garbage_answer()
        if operation.action in behaviour.fails:
            return _failure(operation)
        record = self.components.get(operation.component_id)
        record.record_success(operation.action, remove_data=operation.remove_data)
        if operation.action is Action.PROVISION:
            answer = answers.completed(
                operation.action,
                operation.component_id,
                public_info=behaviour.public_info,
                private_info=behaviour.private_info,
                public_info_json=behaviour.public_info_json,
            )
        else:
            answer = answers.completed(operation.action, operation.component_id)
        if behaviour.content_type is not None:
            answer = replace(answer, media_type=behaviour.content_type)
        if behaviour.reset:
            answer = replace(answer, cut=True)
        return answer

    async def validate(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v1/validate, taking `validationLatencyMs`."""
        result, behaviour = self._validation(body, call)
        if behaviour.validation_latency_ms > 0:
            await asyncio.sleep(behaviour.validation_latency_ms / 1000)
        if behaviour.validation_fail is not None:
            return _validation_failure(behaviour.validation_fail, call.component_id)
        return answers.json_answer(result)

    async def validate_async(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v2/validate: the result is known at once, handed out behind a token when due."""
        result, behaviour = self._validation(body, call)
        if behaviour.validation_fail is not None:
            return _validation_failure(behaviour.validation_fail, call.component_id)
        if behaviour.validation_status is ValidationOutcome.FAILED:
            final = answers.validation_status(ValidationOutcome.FAILED)
        else:
            final = answers.validation_status(ValidationOutcome.COMPLETED, result)
        call.token = token = uuid4().hex
        self._validations[token] = ValidationJob(
            call.component_id,
            call.descriptor_kind,
            final,
            polls=behaviour.validation_polls,
            latency_ms=behaviour.validation_latency_ms,
            started_at=self._clock(),
        )
        return answers.token_answer(token, behaviour.token_format)

    async def validation_status(self, token: str, call: CallRecord) -> Answer:
        """GET /v2/validate/{token}/status: RUNNING until `validationPolls` and latency passed."""
        job = self._validations.get(token)
        if job is None:
            raise _unknown_token(token)
        call.component_id, call.descriptor_kind = job.component_id, job.descriptor_kind
        elapsed_ms = (self._clock() - job.started_at) * 1000
        if job.running_answers < job.polls or elapsed_ms < job.latency_ms:
            job.running_answers += 1
            return answers.validation_status("RUNNING")
        return job.final

    def _validation(self, body: bytes, call: CallRecord) -> tuple[dict[str, Any], MockBehaviour]:
        """A ValidationResult: a descriptor that cannot be read is invalid, not a bad request."""
        request = parse_validation_request(body)
        call.descriptor_kind, call.remove_data = request.kind.value, request.remove_data
        try:
            target = self.reader.read(request.kind, request.descriptor)
            call.component_id, call.dependency_info = target.component_id, target.dependency_info
            self.components.get(target.component_id).validate_count += 1
            behaviour = parse_behaviour(target.component, self.defaults)
        except InvalidRequestError as exc:
            return answers.validation_result(exc.problems), parse_behaviour({}, self.defaults)
        return answers.validation_result(behaviour.invalid), behaviour

    async def update_acl(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v1/updateacl, about the component of `provisionInfo.request`.

        The refs and the parsed `provisionInfo.result` are recorded as received; `aclFail` makes
        the answer FAILED, `aclMode: async` hands it out behind a token (after `polls`), and
        `aclGate` holds the (sync) answer until the test opens that gate.
        """
        request = parse_update_acl_request(body)
        target = self._acl_target(request.descriptor)
        call.component_id, call.descriptor_kind = target.component_id, target.kind.value
        behaviour = parse_behaviour(target.component, self.defaults)
        record = self.components.get(target.component_id)
        record.acl_refs, record.acl_result = list(request.refs), request.result
        if behaviour.acl_fail:
            answer = answers.acl_failed(target.component_id, request.refs)
        else:
            answer = answers.acl_granted(target.component_id, request.refs)
        if behaviour.acl_mode is Mode.SYNC:
            if behaviour.acl_gate is not None:
                await self.gates.wait(behaviour.acl_gate)
            return answer
        call.token = token = uuid4().hex
        self._acl_jobs[token] = AclJob(
            target.component_id, target.kind.value, answer, polls=behaviour.polls
        )
        return answers.token_answer(token, behaviour.token_format)

    def _acl_target(self, descriptor: str) -> Target:
        """The component of the COMPONENT_DESCRIPTOR YAML in provisionInfo.request, or 400."""
        try:
            return self.reader.read(DescriptorKind.COMPONENT, descriptor)
        except InvalidRequestError as exc:
            raise unreadable_acl_request(descriptor, exc) from exc

    def _acl_status(self, token: str, call: CallRecord) -> Answer:
        """The status of an async updateacl: RUNNING `polls` times, then its final answer."""
        job = self._acl_jobs.get(token)
        if job is None:
            raise _unknown_token(token)
        call.component_id, call.descriptor_kind = job.component_id, job.descriptor_kind
        if job.running_answers < job.polls:
            job.running_answers += 1
            return answers.running("updateacl", job.component_id)
        return job.final

    async def reverse_provisioning(self, body: bytes, call: CallRecord) -> Answer:
        """POST /v1/reverse-provisioning, answered synchronously."""
        request = parse_reverse_provisioning_request(body)
        return answers.reverse_provisioning_completed(request.params)

    async def reverse_provisioning_status(self, token: str, call: CallRecord) -> Answer:
        """GET /v1/reverse-provisioning/{token}/status: no token is ever handed out."""
        raise _unknown_token(token)

    def forget_tokens(self) -> int:
        """Forget every token, as a restarted adapter would; returns how many were forgotten."""
        unfinished = sum(1 for operation in self._operations.values() if operation.final is None)
        for _ in range(unfinished):
            self.calls.operation_ended()
        forgotten = len(self._operations) + len(self._validations) + len(self._acl_jobs)
        self._operations.clear()
        self._validations.clear()
        self._acl_jobs.clear()
        return forgotten


def _failure(operation: Operation) -> Answer:
    """The final answer of an operation that `specific.mock.fail` makes fail."""
    fail_how = operation.behaviour.fail_how
    problem = (
        f"{operation.action} of {operation.component_id} failed: specific.mock.fail asked for it"
    )
    if fail_how is FailHow.BAD_REQUEST:
        return answers.request_validation_error([problem], "The mock adapter rejected the request")
    if fail_how is FailHow.SYSTEM_ERROR:
        return answers.system_error("The mock adapter failed", problems=[problem])
    return answers.failed(operation.action, operation.component_id)


def _validation_failure(how: CallFailure, component_id: str | None) -> Answer:
    """The error answer of a validate call that `specific.mock.validationFail` makes fail."""
    problem = f"validate of {component_id} failed: specific.mock.validationFail asked for it"
    if how is CallFailure.BAD_REQUEST:
        return answers.request_validation_error([problem], "The mock adapter rejected the request")
    return answers.system_error("The mock adapter failed to validate", problems=[problem])


def _unknown_token(token: str) -> InvalidRequestError:
    """404: the token is not known here (never handed out, or forgotten by a restart)."""
    return InvalidRequestError(
        [f"token: {token!r} is unknown"], user_message="Unknown token", status_code=404
    )
