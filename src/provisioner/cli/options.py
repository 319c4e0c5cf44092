"""Options shared by the client commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from provisioner.cli.http import DEFAULT_URL, Server

CLIENT = "Client options"


class Output(StrEnum):
    text = "text"
    json = "json"


UrlOption = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="PROVISIONER_URL",
        metavar="URL",
        help="The service's address.",
        rich_help_panel=CLIENT,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PROVISIONER_TOKEN",
        metavar="TOKEN",
        help="Bearer token (prefer the variable: arguments are visible to other users).",
        show_default=False,
        rich_help_panel=CLIENT,
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option(
        "-o",
        "--output",
        metavar="text|json",
        help="text for people, json for pipelines (the shapes are in the README).",
        rich_help_panel=CLIENT,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="SECONDS",
        help="Stop waiting after this long (exit 4; the operation goes on). Default: no limit.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait", help="Follow the operation until it ends; exit 1 if it fails or is cancelled."
    ),
]
EnvOption = Annotated[
    str | None,
    typer.Option("--env", metavar="ENV", help="Target environment (default: the descriptor's)."),
]
RequiredEnv = Annotated[str, typer.Option("--env", metavar="ENV", help="The environment.")]
ComponentsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--component",
        metavar="ID",
        help="Only this component (repeat for several).",
        show_default=False,
    ),
]
DescriptorArgument = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="The deployment unit descriptor (YAML or JSON).", show_default=False
    ),
]
# Without SECONDS: as long as --timeout allows. A bare flag is spelled "forever" before
# parsing (app.optional_values), since click options cannot take an optional value.
WAIT_FOREVER = "forever"
WaitForLockOption = Annotated[
    str | None,
    typer.Option(
        "--wait-for-lock",
        metavar="[SECONDS]",
        help="If another operation is active there (409), wait for it to end and ask again, "
        "for at most SECONDS (default: as long as --timeout allows); exit 3 if still busy.",
        show_default=False,
    ),
]

__all__ = ["DEFAULT_URL", "Server"]
