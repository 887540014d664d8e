"""`hubd peers`: the other nodes mirrored from, in order, before huggingface.co."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from hubd.sources.registry import add_peer, list_peers, remove_peer

from .common import json_option, open_context
from .output import emit_json, table


@click.group("peers")
def peers_group() -> None:
    """Other hubd nodes to mirror from (tried in order, then huggingface.co)."""


@peers_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="File holding the peer's token (read at use; never stored).",
)
@click.option("--token-env", metavar="VAR", help="Environment variable holding the token.")
@json_option
@click.pass_obj
def add_cmd(
    obj: dict[str, Any],
    name: str,
    url: str,
    token_file: Path | None,
    token_env: str | None,
    as_json: bool,
) -> None:
    """Add peer NAME at URL (http(s)://host:port)."""
    peer = add_peer(open_context(obj), name, url, token_file, token_env)
    if as_json:
        emit_json(asdict(peer))
    else:
        click.echo(f"added peer {peer.name} ({peer.url}) at position {peer.position}")


@peers_group.command("ls")
@json_option
@click.pass_obj
def ls_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """List peers in the order they are tried."""
    peers = list_peers(open_context(obj))
    if as_json:
        emit_json([asdict(p) for p in peers])
        return
    table(
        ["NAME", "URL", "TOKEN"],
        [
            [p.name, p.url, p.token_file or (f"${p.token_env}" if p.token_env else "-")]
            for p in peers
        ],
    )


@peers_group.command("rm")
@click.argument("name")
@click.pass_obj
def rm_cmd(obj: dict[str, Any], name: str) -> None:
    """Remove peer NAME."""
    remove_peer(open_context(obj), name)
    click.echo(f"removed peer {name}")
