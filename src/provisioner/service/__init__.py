"""The use cases shared by the REST API and the dashboard, in three parts: commands that
submit operations, reads of what is stored, and calls passed through to a Tech Adapter."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.service.commands import Commands
from provisioner.service.passthrough import AdapterCalls
from provisioner.service.reads import Reads
from provisioner.service.streams import EventStreams


@dataclass(frozen=True, slots=True)
class Services:
    """The use cases of one running service."""

    commands: Commands
    reads: Reads
    adapter_calls: AdapterCalls
    streams: EventStreams


__all__ = ["AdapterCalls", "Commands", "EventStreams", "Reads", "Services"]
