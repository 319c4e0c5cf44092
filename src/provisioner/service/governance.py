"""Policies in the service: the input each request gives them, and what their verdict does.

The input is ``{action, environment, descriptor, components, removeData, principal}``:
``descriptor`` is the unit descriptor being deployed (an undeploy: the release's last
deployed one, or null), ``components`` the subset asked for (null: all of them), ``principal``
who asks (null when the service has no authentication). A ``deny`` refuses the request with
``PolicyDeniedError``; ``warn`` messages go with the operation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.domain.status import OperationType
from provisioner.errors import PolicyDeniedError, Problem
from provisioner.policies import PolicyVerdict
from provisioner.service.ports import PolicyCheck, QuietServiceObserver, ServiceObserver


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """A request as the policies see it; ``descriptor_json`` is the descriptor's JSON text
    (already serialised for the store: it is not serialised again)."""

    action: OperationType
    environment: str
    descriptor_json: str | None
    components: Sequence[str] | None = None
    remove_data: bool = False
    principal: str | None = None

    def input_json(self) -> str:
        """The policy input as JSON text, the descriptor's text spliced in as it is."""

        def text(value: object) -> str:
            return json.dumps(value, ensure_ascii=False)

        components = None if self.components is None else list(self.components)
        return (
            f'{{"action":{text(self.action.value)},"environment":{text(self.environment)},'
            f'"descriptor":{self.descriptor_json or "null"},"components":{text(components)},'
            f'"removeData":{text(self.remove_data)},"principal":{text(self.principal)}}}'
        )


class Governance:
    """The policies of the service, if it has any."""

    def __init__(
        self, policies: PolicyCheck | None = None, observer: ServiceObserver | None = None
    ) -> None:
        self._policies = policies
        self._observer = observer or QuietServiceObserver()

    @property
    def enabled(self) -> bool:
        return self._policies is not None

    async def verdict(self, request: PolicyRequest) -> PolicyVerdict:
        """What the policies say (nothing, without policies)."""
        if self._policies is None:
            return PolicyVerdict()
        return await self._policies.evaluate(request.input_json())

    async def check(self, request: PolicyRequest) -> tuple[Problem, ...]:
        """The policies' warnings; ``PolicyDeniedError`` listing every deny message."""
        verdict = await self.verdict(request)
        if verdict.denials:
            for policy in dict.fromkeys(problem.path for problem in verdict.denials):
                self._observer.policy_denied(policy)
            count = len(verdict.denials)
            raise PolicyDeniedError(
                f"refused by {count} policy rule{'s' if count > 1 else ''}", verdict.denials
            )
        return verdict.warnings
