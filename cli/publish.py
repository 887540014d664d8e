"""`hubd add`: publish a local model or adapter directory into the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubd.ops.publish import add

from .common import json_option, open_context
from .output import emit_json, human_bytes


@click.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--repo", "repo_id", required=True, metavar="ORG/NAME", help="Repo id to publish as.")
@click.option("--revision", default="main", show_default=True, help="Branch name to point at it.")
@json_option
@click.pass_obj
def add_cmd(obj: dict[str, Any], path: Path, repo_id: str, revision: str, as_json: bool) -> None:
    """Hash, store and record the directory PATH as a revision of ORG/NAME."""
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
