"""The request-scoped dependencies of the routes, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from provisioner.api.schemas import ProblemOut
from provisioner.service import AdapterCalls, Commands, Reads, Services
from provisioner.service.streams import EventStreams

# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, a hop per
# request that cost ~5% of a replica's CPU under load.


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _commands(request: Request) -> Commands:
    return _services(request).commands


async def _reads(request: Request) -> Reads:
    return _services(request).reads


async def _adapter_calls(request: Request) -> AdapterCalls:
    return _services(request).adapter_calls


async def _streams(request: Request) -> EventStreams:
    return _services(request).streams


CommandsDep = Annotated[Commands, Depends(_commands)]
StreamsDep = Annotated[EventStreams, Depends(_streams)]
ReadsDep = Annotated[Reads, Depends(_reads)]
AdapterCallsDep = Annotated[AdapterCalls, Depends(_adapter_calls)]


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error answers: registered with the problem model so that its
    schema is published; ``problem_documents`` moves them to application/problem+json."""
    return {code: {"model": ProblemOut} for code in codes}
