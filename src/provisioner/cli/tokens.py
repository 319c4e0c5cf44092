"""``provisioner token ...``: API tokens, in the database (migrated first), like ``migrate``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.exits import Exit
from provisioner.cli.options import Output, OutputOption
from provisioner.cli.render import print_json, show, table
from provisioner.cli.server import in_database, settings

if TYPE_CHECKING:
    from provisioner.auth.tokens import TokenInfo

tokens = typer.Typer(
    help="Create, list and revoke API tokens (in the database of PROVISIONER_DATABASE_URL).",
    no_args_is_help=True,
)


def _quiet_settings() -> Any:
    from provisioner.log import configure_logging

    config = settings()
    configure_logging(fmt=config.log_format, level="WARNING")
    return config


@tokens.command()
def create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Who it is for: recorded as requestedBy.")
    ],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="read, validate, admin, deploy:ENVIRONMENT or deploy:* (repeat for several).",
        ),
    ],
    expires_in: Annotated[
        int | None,
        typer.Option(
            metavar="DAYS", help="Days until it expires. Default: never.", show_default=False
        ),
    ] = None,
) -> Exit:
    """Create a token and print its secret, and only it (it is shown once)."""
    from provisioner.auth.tokens import create_token

    created = in_database(
        _quiet_settings(),
        lambda db: create_token(db, name, scope, expires_in_days=expires_in),
    )
    print(created.secret)  # only the secret, on stdout: `TOKEN=$(provisioner token create ...)`
    return Exit.OK


@tokens.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    output: OutputOption = Output.text,
) -> Exit:
    """List tokens: name, scopes, created, last used, expiry, status (never their secrets)."""
    from provisioner.auth.tokens import list_tokens

    found = in_database(_quiet_settings(), lambda db: list_tokens(db, include_revoked=all_))
    if output is Output.json:
        print_json(token_items(found))
    else:
        show(token_table(found))
    return Exit.OK


@tokens.command()
def revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The active token of this name.")],
) -> Exit:
    """Revoke the active token of this name."""
    from provisioner.auth.tokens import revoke_token

    in_database(_quiet_settings(), lambda db: revoke_token(db, name))
    print(f"revoked {name}", file=sys.stderr)
    return Exit.OK


def _when(moment: Any) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def token_items(found: Sequence[TokenInfo]) -> dict[str, Any]:
    from provisioner.auth.tokens import utc_now

    now = utc_now()
    return {
        "items": [
            {
                "name": token.name,
                "scopes": list(token.scopes),
                "createdAt": _when(token.created_at),
                "lastUsedAt": _when(token.last_used_at),
                "expiresAt": _when(token.expires_at),
                "status": token.status(now),
            }
            for token in found
        ]
    }


def token_table(found: Sequence[TokenInfo]) -> Any:
    rows = [
        (
            item["name"],
            ",".join(item["scopes"]),
            item["createdAt"],
            item["lastUsedAt"],
            item["expiresAt"],
            item["status"],
        )
        for item in token_items(found)["items"]
    ]
    return table(("NAME", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "STATUS"), rows)
