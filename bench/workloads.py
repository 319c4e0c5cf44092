"""The benchmark workloads: deployment unit shapes, their descriptors and their floors.

A shape is the DAG of components with one adapter latency; ``descriptor`` turns it into a unit
descriptor for a given unit id (fresh per repetition, so every run is a first deploy). The
floor is what an ideal eager executor with no overhead would take, honouring the bound on
adapter calls in flight.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import yaml

MAX_IN_FLIGHT = 64
TEMPLATE_ID = "urn:dmb:itm:bench-mock-provisioner:0"
ENVIRONMENT = "bench"
LARGE_SEED = 20240611
NAMES = ("chain", "wide", "layered", "large")


@dataclass(frozen=True, slots=True)
class Node:
    """A component of a shape: its local name and the local names it depends on."""

    name: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shape:
    """A workload: components in descriptor order, all with the same adapter latency."""

    name: str
    latency_ms: float
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Floor:
    """The ideal makespan and the number of adapter steps on its critical path."""

    seconds: float
    steps: int


def shape(name: str) -> Shape:
    """The shape of a named workload."""
    if name == "chain":
        return _chain(50, 10.0)
    if name == "wide":
        return _wide("wide", 200, 50.0)
    if name == "warmup":
        return _wide("warmup", MAX_IN_FLIGHT, 1.0)
    if name == "layered":
        return _layered(10, 20, fan_in=None, latency_ms=20.0)
    if name == "large":
        return _layered(20, 100, fan_in=3, latency_ms=5.0)
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")


def _chain(length: int, latency_ms: float) -> Shape:
    nodes = [Node("c000", ())]
    nodes += [Node(f"c{i:03d}", (f"c{i - 1:03d}",)) for i in range(1, length)]
    return Shape("chain", latency_ms, tuple(nodes))


def _wide(name: str, width: int, latency_ms: float) -> Shape:
    leaves = [Node(f"leaf{i:03d}", ("root",)) for i in range(width)]
    return Shape(name, latency_ms, (Node("root", ()), *leaves))


def _layered(layers: int, width: int, *, fan_in: int | None, latency_ms: float) -> Shape:
    """``fan_in`` None: every component depends on the whole previous layer."""
    rng = random.Random(LARGE_SEED)
    nodes: list[Node] = []
    previous: list[str] = []
    for layer in range(layers):
        current = [f"l{layer:02d}n{i:03d}" for i in range(width)]
        for name in current:
            deps = previous if fan_in is None or not previous else rng.sample(previous, fan_in)
            nodes.append(Node(name, tuple(deps)))
        previous = current
    return Shape("large" if fan_in else "layered", latency_ms, tuple(nodes))


# --- descriptors ------------------------------------------------------------------------------


def component_id(unit_id: str, name: str) -> str:
    return f"{unit_id.removesuffix(':0')}:{name}"


def descriptor(spec: Shape, unit_id: str) -> dict[str, Any]:
    """The unit descriptor (no infrastructureTemplateId: the system step calls no adapter)."""
    slug = unit_id.split(":")[-2]
    return {
        "id": unit_id,
        "name": slug,
        "fullyQualifiedName": f"Benchmark {spec.name} {slug}",
        "description": f"Benchmark data product: the {spec.name} workload",
        "kind": "dataproduct",
        "domain": "domain:bench",
        "version": "1.0.0",
        "environment": ENVIRONMENT,
        "dataProductOwner": "user:bench.owner_example.com",
        "ownerGroup": "group:bench-owners",
        "devGroup": "group:bench-developers",
        "informationSLA": "2BD",
        "status": "Draft",
        "maturity": "Tactical",
        "tags": [{"tagFQN": "bench"}],
        "specific": {},
        "components": [_component(spec, unit_id, node) for node in spec.nodes],
    }


def _component(spec: Shape, unit_id: str, node: Node) -> dict[str, Any]:
    own_id = component_id(unit_id, node.name)
    return {
        "id": own_id,
        "name": node.name,
        "fullyQualifiedName": f"{spec.name} {node.name}",
        "description": f"Component {node.name} of the {spec.name} benchmark",
        "kind": "workload",
        "version": "1.0.0",
        "infrastructureTemplateId": TEMPLATE_ID,
        "useCaseTemplateId": "urn:dmb:utm:bench-workload-template:0.0.0",
        "dependsOn": [component_id(unit_id, dep) for dep in node.depends_on],
        "platform": "Bench",
        "technology": "Mock",
        "tags": [{"tagFQN": "bench"}],
        "specific": {
            "mock": {"latencyMs": spec.latency_ms},
            "database": "BENCH_DB",
            "schema": f"{spec.name.upper()}_SCHEMA",
            "table": node.name.upper(),
        },
    }


def descriptor_yaml(document: dict[str, Any]) -> str:
    """The descriptor as a user would write it (key order kept)."""
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=4096))


# --- floors -----------------------------------------------------------------------------------


def floor(spec: Shape, *, max_in_flight: int = MAX_IN_FLIGHT) -> Floor:
    """Simulate an eager executor with zero overhead and ``max_in_flight`` slots.

    Ready components start in the order they became ready (descriptor order on ties). Every
    component has the same latency, so the critical path has makespan / latency steps.
    """
    latency = spec.latency_ms / 1000
    successors: dict[str, list[str]] = {node.name: [] for node in spec.nodes}
    waiting = {node.name: len(node.depends_on) for node in spec.nodes}
    for node in spec.nodes:
        for dep in node.depends_on:
            successors[dep].append(node.name)
    ready = deque(node.name for node in spec.nodes if not node.depends_on)
    running: list[tuple[float, int, str]] = []
    now, sequence = 0.0, 0
    while ready or running:
        while ready and len(running) < max_in_flight:
            heapq.heappush(running, (now + latency, sequence, ready.popleft()))
            sequence += 1
        now, _, done = heapq.heappop(running)
        for successor in successors[done]:
            waiting[successor] -= 1
            if waiting[successor] == 0:
                ready.append(successor)
    return Floor(now, round(now / latency))
