"""Evaluating the policies: compiled once at start, evaluated in-process on one thread.

The conventions are conftest's: in each package under ``provisioner``, the rules ``deny`` and
``warn`` are sets of messages. A message is a string, or an object with a ``msg`` (anything
else is shown as its JSON).

An interpreter holds its input as state and is not thread-safe, so one dedicated thread owns
it: requests wait for it in turn, and the event loop never runs an evaluation. The input is
handed over as JSON text, which rego-cpp parses itself: regopy's conversion of Python values
overflows integers beyond 64 bits and breaks strings holding a double quote. The query asks for
the ``deny`` and ``warn`` of each policy package only (not every value the policies compute,
such as a copy of the descriptor).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from provisioner.errors import PolicyError, Problem
from provisioner.policies.answers import query_result
from provisioner.policies.compiler import compile_policies
from provisioner.policies.sources import (
    ROOT_PACKAGE,
    RULES,
    PolicyProblem,
    PolicySource,
    policy_packages,
    read_sources,
    refuse,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Inputs evaluated once at start, so that a policy that fails when it runs (a function that
# does not exist, conflicting values, a regex the engine refuses) stops the service instead of
# the first request it meets. Their descriptor is a small but complete data product.
_SAMPLE_UNIT = {
    "id": "urn:dmb:dp:sample:sample:0",
    "name": "Sample",
    "fullyQualifiedName": "Sample",
    "description": "A data product the policies are tried on at start",
    "kind": "dataproduct",
    "domain": "sample",
    "version": "0.1.0",
    "environment": "development",
    "dataProductOwner": "user:owner",
    "devGroup": "group:dev",
    "components": [
        {
            "id": "urn:dmb:cmp:sample:sample:0:storage",
            "name": "Storage",
            "kind": "storage",
            "version": "0.1.0",
            "infrastructureTemplateId": "urn:dmb:itm:sample:0",
            "dependsOn": [],
        },
        {
            "id": "urn:dmb:cmp:sample:sample:0:port",
            "name": "Port",
            "kind": "outputport",
            "version": "0.1.0",
            "infrastructureTemplateId": "urn:dmb:itm:sample:0",
            "dependsOn": ["urn:dmb:cmp:sample:sample:0:storage"],
            "dataContract": {"schema": []},
        },
    ],
}
SAMPLE_INPUTS: tuple[dict[str, Any], ...] = (
    {
        "action": "DEPLOY",
        "environment": "development",
        "descriptor": _SAMPLE_UNIT,
        "components": None,
        "removeData": False,
        "principal": None,
    },
    {
        "action": "UNDEPLOY",
        "environment": "production",
        "descriptor": {**_SAMPLE_UNIT, "environment": "production"},
        "components": [_SAMPLE_UNIT["components"][1]["id"]],  # type: ignore[index]
        "removeData": True,
        "principal": "sample",
    },
)


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """What the policies said of one request; each problem's path is its policy (package)."""

    denials: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()


class PolicyEngine:
    """The policies of one service, on their own thread; ``close`` stops the thread."""

    def __init__(self, sources: Sequence[PolicySource]) -> None:
        self._packages = sorted({name for s in sources for name in policy_packages(s)})
        self._files = [source.name for source in sources]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policies")
        self._interpreter: Any = None
        self._bundle: Any = None

    @classmethod
    async def load(cls, directory: Path) -> PolicyEngine:
        """Read, check, compile and try the policies in ``directory``; ``ConfigurationError``
        names the file and line of every problem."""
        sources = await asyncio.to_thread(read_sources, directory)
        engine = cls(sources)
        try:
            await engine._on_thread(engine._prepare, sources)
        except BaseException:
            engine.close()
            raise
        log.info("policies_loaded", directory=str(directory), packages=engine._packages)
        return engine

    @property
    def packages(self) -> list[str]:
        return list(self._packages)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def evaluate(self, input_json: str) -> PolicyVerdict:
        """The verdict on one request, ``input_json`` being its policy input as JSON text."""
        verdict: PolicyVerdict = await self._on_thread(self._evaluate, input_json)
        return verdict

    async def _on_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def _prepare(self, sources: Sequence[PolicySource]) -> None:
        self._interpreter, self._bundle = compile_policies(sources, verdict_query(self._packages))
        problems: list[PolicyProblem] = []
        for sample in SAMPLE_INPUTS:
            try:
                self._evaluate(json.dumps(sample))
            except PolicyError as exc:
                problems.append(PolicyProblem(", ".join(self._files), exc.message))
        if problems:
            raise refuse(problems[:1])

    def _evaluate(self, input_json: str) -> PolicyVerdict:
        self._interpreter.set_input_term(input_json)
        result = query_result(self._interpreter, self._bundle)
        denials: list[Problem] = []
        warnings: list[Problem] = []
        for package in self._packages:
            rules = result.get(package) if isinstance(result, dict) else None
            deny, warn = rules if isinstance(rules, list) and len(rules) == 2 else (None, None)
            denials.extend(Problem(package, m) for m in _messages(deny, "deny", package))
            warnings.extend(Problem(package, m) for m in _messages(warn, "warn", package))
        return PolicyVerdict(tuple(denials), tuple(warnings))


def verdict_query(packages: Sequence[str]) -> str:
    """``result := {package: [deny, warn], ...}``, each rule defaulting to empty when the
    package does not define it (a package without ``deny`` is no error)."""

    def rule(package: str, name: str) -> str:
        path = json.dumps([*package.split(".")[1:], name])
        return f"object.get(data.{ROOT_PACKAGE}, {path}, [])"

    pairs = [
        f"{json.dumps(package)}: [{rule(package, RULES[0])}, {rule(package, RULES[1])}]"
        for package in packages
    ]
    return "result := {" + ", ".join(pairs) + "}"


def _messages(value: Any, rule: str, package: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):  # a set comes back as a list
        raise PolicyError(
            f"{package}.{rule} is not a set of messages: write '{rule} contains msg if {{ ... }}'"
        )
    return [_message(item) for item in value]


def _message(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("msg"), str):
        return str(item["msg"])
    return json.dumps(item, ensure_ascii=False, sort_keys=True)
