"""`hubd add`: publish a local model or adapter directory into the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubd.ops.publish import add
from hubd.ops.push import push

from .common import json_option, open_context
from .output import emit_json, human_bytes


@click.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Repo id to publish as.")
@click.option("--revision", default="main", show_default=True, help="Branch name to point at it.")
@click.option(
    "--to",
    "to",
    metavar="URL",
    help="Publish to the hubd node at URL over the Hub's write API instead of this home.",
)
@click.option("--token", envvar="HF_TOKEN", help="Write token of the node at --to [env: HF_TOKEN].")
@click.option("-m", "--message", help="Commit message (with --to).")
@json_option
@click.pass_obj
def add_cmd(
    obj: dict[str, Any],
    path: Path,
    repo_id: str,
    revision: str,
    to: str | None,
    token: str | None,
    message: str | None,
    as_json: bool,
) -> None:
    """Hash, store and record the directory PATH as a revision of ORG/NAME.

    With --to, the node at URL does that: the files it lacks are uploaded, and it verifies,
    judges, signs and records the commit as made by the token.
    """
    if to is not None:
        if not token:
            raise click.UsageError("--to needs a write token: --token or HF_TOKEN")
        pushed = push(path, repo_id, to, token, revision, message)
        if as_json:
            emit_json(pushed.to_json())
            return
        state = "up to date" if pushed.up_to_date else "committed"
        click.echo(
            f"{state} {pushed.repo}@{pushed.revision} -> {pushed.commit[:12]}: {pushed.files} "
            f"files, {pushed.changed} changed, {pushed.deleted} deleted, "
            f"{human_bytes(pushed.bytes_uploaded)} uploaded"
        )
        click.echo(f"  {pushed.url}")
        return
    result = add(open_context(obj), path, repo_id, revision)
    if as_json:
        emit_json(result.to_json())
        return
    state = "up to date" if result.up_to_date else "added"
    click.echo(
        f"{state} {result.repo}@{result.revision} -> {result.commit[:12]}: {result.files} files, "
        f"{human_bytes(result.bytes_added)} new, {human_bytes(result.bytes_reused)} reused"
    )
    if result.is_adapter:
        click.echo(f"  adapter for {result.base_model or 'an unknown base model'}")
    if result.signed_by:
        click.echo(f"  model.sig: signature by {result.signed_by} verified and kept")
    click.echo(f"  snapshot: {result.snapshot}")
