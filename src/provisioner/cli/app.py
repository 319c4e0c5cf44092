"""The ``provisioner`` command: its commands, and how their outcomes become exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from provisioner import __version__
from provisioner.cli import client, server
from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.options import WAIT_FOREVER
from provisioner.cli.tokens import tokens

# Options whose value may be left out (click has no such options): a bare one is given its
# "no value" spelling before parsing.
OPTIONAL_VALUES = {"--wait-for-lock": WAIT_FOREVER}


def optional_values(args: Sequence[str]) -> list[str]:
    """``--wait-for-lock`` followed by no number becomes ``--wait-for-lock=forever``."""
    out: list[str] = []
    for index, arg in enumerate(args):
        out.append(arg)
        if arg in OPTIONAL_VALUES:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is None or not _number(following):
                out[-1] = f"{arg}={OPTIONAL_VALUES[arg]}"
    return out


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Commands(TyperGroup):  # ctx: Any, the context class of the click Typer vendors
    """The command group: a command's ``Exit`` (or ``CommandError``) is the process's exit
    status; Ctrl-C is 130."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, optional_values(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
        except CommandError as exc:
            exc.report()
            raise typer.Exit(int(exc.code)) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
        if isinstance(result, int) and result != 0:
            raise typer.Exit(int(result))
        return result


app = typer.Typer(
    cls=Commands,
    name="provisioner",
    help="Deployment coordinator for data products: run the service, and talk to a running one.",
    epilog="Exit codes: 0 succeeded, 1 the operation failed or was cancelled, 2 refused as "
    "invalid, 3 busy (409), 4 --timeout passed, 5 cannot reach the server or not authorised, "
    "130 interrupted; serve: 10-17 (README, Exit codes).",
    no_args_is_help=True,
    # Help is plain text: no markup is read in it, so [SECONDS] and the like print as written.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SERVER = "Run provisioner"
CLIENT = "Talk to a running service"
for name, command, panel in [
    ("deploy", client.deploy, CLIENT),
    ("undeploy", client.undeploy, CLIENT),
    ("plan", client.plan, CLIENT),
    ("validate", client.validate, CLIENT),
    ("status", client.status, CLIENT),
    ("releases", client.releases, CLIENT),
    ("operations", client.operations, CLIENT),
    ("operation", client.operation, CLIENT),
    ("events", client.events, CLIENT),
    ("wait", client.wait, CLIENT),
    ("cancel", client.cancel, CLIENT),
    ("retry", client.retry, CLIENT),
    ("serve", server.serve, SERVER),
    ("migrate", server.migrate, SERVER),
    ("purge", server.purge, SERVER),
    ("mock-adapter", server.mock_adapter, SERVER),
    ("demo", server.demo, SERVER),
]:
    app.command(name, rich_help_panel=panel)(command)  # type: ignore[type-var]
app.add_typer(tokens, name="token", rich_help_panel=SERVER)


def _version(value: bool) -> None:
    if value:
        print(f"provisioner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Deployment coordinator for data products: run the service, and talk to a running one."""


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: the exit status of the command ``argv`` (default: sys.argv)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="provisioner")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
