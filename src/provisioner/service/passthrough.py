"""Calls made to a Tech Adapter on a user's behalf and answered at once: validate a descriptor,
reverse provisioning. Nothing is stored. (An ACL update is an operation: ``Commands``.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from provisioner.adapters.client import ReverseProvisioningOutcome, TechAdapterClient
from provisioner.domain.descriptor import DeploymentUnit
from provisioner.domain.rendering import DescriptorTexts, WireText
from provisioner.domain.status import OperationType, TaskAction
from provisioner.engine.ports import (
    AdapterDirectory,
    AdapterEndpoint,
    AdapterRequest,
    DescriptorKind,
    ValidationOutcome,
)
from provisioner.errors import (
    AdapterError,
    AdapterTimeoutError,
    InvalidRequestError,
    Problem,
)
from provisioner.offload import offload
from provisioner.service.commands import read_target, read_unit, unregistered
from provisioner.service.governance import Governance, PolicyRequest
from provisioner.service.ports import (
    PolicyCheck,
    QuietServiceObserver,
    ServiceObserver,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ComponentValidation:
    component_id: str
    valid: bool
    errors: list[str]


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Everything that would stop a deploy of a descriptor, or be noted on it: each adapter's
    verdict, the policies' denials and warnings, and the warnings of reading the request."""

    environment: str
    components: list[ComponentValidation]
    denials: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.denials and all(item.valid for item in self.components)


class AdapterCalls:
    """Pass-through calls to the adapter registered for a template in an environment."""

    def __init__(
        self,
        *,
        directory: AdapterDirectory,
        adapters: TechAdapterClient,
        policies: PolicyCheck | None = None,
        observer: ServiceObserver | None = None,
    ) -> None:
        self._directory = directory
        self._adapters = adapters
        self._observer = observer or QuietServiceObserver()
        self._governance = Governance(policies, self._observer)

    async def validate(
        self, document: object, *, environment: str | None, document_size: int = 0
    ) -> list[ComponentValidation]:
        """Ask every component's Tech Adapter to validate the descriptor, all at once."""
        unit, env = await offload(document_size, read_unit, document, environment, self._directory)
        return await self._ask_adapters(unit, env)

    async def report(
        self,
        document: object,
        *,
        environment: str | None,
        document_size: int = 0,
        principal: str | None = None,
        warnings: tuple[Problem, ...] = (),
    ) -> ValidationReport:
        """Validate a descriptor as a deploy would: the service's own checks (a descriptor
        that breaks them is ``InvalidDescriptorError``), then the policies and every adapter,
        at once. Nothing is stored."""
        target = await offload(document_size, read_target, document, environment, self._directory)
        unit, env = target.unit, target.environment
        descriptor_json = await offload(
            document_size, json.dumps, unit.document, ensure_ascii=False
        )
        verdict, components = await asyncio.gather(
            self._governance.verdict(
                PolicyRequest(OperationType.DEPLOY, env, descriptor_json, principal=principal)
            ),
            self._ask_adapters(unit, env),
        )
        return ValidationReport(env, components, verdict.denials, (*warnings, *verdict.warnings))

    async def _ask_adapters(self, unit: DeploymentUnit, env: str) -> list[ComponentValidation]:
        texts = DescriptorTexts(unit.document)
        checks: list[tuple[str, AdapterEndpoint, AdapterRequest]] = []
        # An unregistered unit-level template is validated by no one: the system step of a
        # deploy makes no call either.
        unit_endpoint = (
            self._directory.resolve(unit.infrastructure_template_id, env)
            if unit.infrastructure_template_id
            else None
        )
        if unit_endpoint is not None:
            checks.append((unit.id, unit_endpoint, _request(texts.unit, "DATAPRODUCT_DESCRIPTOR")))
        for component in unit.components:
            endpoint = self._resolve(component.infrastructure_template_id, env)
            text = texts.component(component.id)
            checks.append((component.id, endpoint, _request(text, "COMPONENT_DESCRIPTOR")))

        async def check(
            cid: str, endpoint: AdapterEndpoint, request: AdapterRequest
        ) -> ComponentValidation:
            try:
                async with self._time_limit(endpoint):
                    outcome = await self._adapters.validate(endpoint, request)
            except AdapterError as exc:
                outcome = ValidationOutcome(False, [exc.message])
            return ComponentValidation(cid, outcome.valid, outcome.errors)

        return list(await asyncio.gather(*(check(*item) for item in checks)))

    async def reverse_provision(
        self,
        *,
        infrastructure_template_id: str,
        environment: str,
        body: dict[str, Any],
        principal: str | None = None,
    ) -> ReverseProvisioningOutcome:
        endpoint = self._resolve(infrastructure_template_id, environment)
        log.info(
            "reverse_provisioning_requested",
            infrastructure_template_id=infrastructure_template_id,
            environment=environment,
            principal=principal,
        )
        async with self._time_limit(endpoint):
            return await self._adapters.reverse_provision(endpoint, body)

    @asynccontextmanager
    async def _time_limit(self, endpoint: AdapterEndpoint) -> AsyncIterator[None]:
        """The adapter's time limit on an answer; passing it is one of its errors."""
        try:
            async with endpoint.time_limit(awaiting="answer"):
                yield
        except AdapterTimeoutError:
            self._observer.adapter_error(endpoint, "timeout")
            raise

    def _resolve(self, template_id: str, environment: str) -> AdapterEndpoint:
        endpoint = self._directory.resolve(template_id, environment)
        if endpoint is None:
            raise InvalidRequestError(
                "no Tech Adapter",
                [Problem("infrastructureTemplateId", unregistered(template_id, environment))],
            )
        return endpoint


def _request(text: WireText, kind: DescriptorKind) -> AdapterRequest:
    return AdapterRequest(
        action=TaskAction.PROVISION,
        descriptor_kind=kind,
        descriptor=text,
        latest_enriched_descriptor=None,
        remove_data=False,
    )
