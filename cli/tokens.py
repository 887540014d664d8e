"""`hubd tokens`: bearer tokens for the HTTP API (stored hashed; shown once)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from hubd.cluster.tokens import SCOPES, create_token, list_tokens, revoke_token

from .common import json_option, open_context
from .output import emit_json, table


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for `auth.required` daemons and their peers."""


@tokens_group.command("create")
@click.option("--scope", type=click.Choice(SCOPES), default="read", show_default=True)
@click.option("--name", default="", help="What the token is for.")
@click.option(
    "--repos",
    "repos",
    multiple=True,
    help="Only repos matching this glob may be written (repeatable), e.g. 'acme/*'.",
)
@json_option
@click.pass_obj
def create_cmd(
    obj: dict[str, Any], scope: str, name: str, repos: tuple[str, ...], as_json: bool
) -> None:
    """Create a token; its secret is printed once and never stored."""
    info, secret = create_token(open_context(obj), scope, name, list(repos) or None)
    if as_json:
        emit_json({**asdict(info), "token": secret})
        return
    click.echo(secret)
    click.echo(
        f"token {info.id} ({info.scope}) created; this is the only time it is shown", err=True
    )


@tokens_group.command("ls")
@json_option
@click.pass_obj
def ls_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """List tokens (never their secrets)."""
    tokens = list_tokens(open_context(obj))
    if as_json:
        emit_json([asdict(t) for t in tokens])
        return
    table(
        ["ID", "SCOPE", "NAME", "REPOS", "CREATED", "REVOKED"],
        [
            [
                t.id,
                t.scope,
                t.name,
                ",".join(t.repos) if t.repos else "*",
                t.created_at.isoformat()[:19],
                t.revoked_at.isoformat()[:19] if t.revoked_at else "-",
            ]
            for t in tokens
        ],
    )


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
@click.pass_obj
def revoke_cmd(obj: dict[str, Any], token_id: int) -> None:
    """Revoke token ID at once."""
    info = revoke_token(open_context(obj), token_id)
    click.echo(f"token {info.id} revoked")
