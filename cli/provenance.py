"""`hubd provenance`: a revision's chain of custody and who vouches for its content."""

from __future__ import annotations

from typing import Any

import click

from hubd.catalog.queries import require_revision
from hubd.catalog.views import provenance_hop
from hubd.refs import RepoRef
from hubd.verify.trust import may_use

from .common import json_option, open_context
from .output import emit_json


@click.command("provenance")
@click.argument("repo")
@json_option
@click.pass_obj
def provenance_cmd(obj: dict[str, Any], repo: str, as_json: bool) -> None:
    """Show REPO[@rev]'s hops (source -> node) and its signers under the trust policy."""
    ref = RepoRef.parse(repo)
    context = open_context(obj)
    with context.catalog() as session:
        revision = require_revision(session, ref.repo_id, ref.revision)
        commit = revision.commit
        hops = [provenance_hop(hop) for hop in revision.provenance]
    verdict = may_use(context, ref.repo_id, commit)
    if as_json:
        emit_json({"repo": ref.repo_id, "commit": commit, "provenance": hops, **verdict.to_json()})
        return
    click.echo(f"{ref.repo_id}@{commit}")
    for hop in hops:
        click.echo(
            f"  #{hop['hop']} {hop['source']} @ {hop['commit'][:12]} -> {hop['node']} "
            f"({hop['client']}, {hop['fetched_at'][:19]})"
        )
    click.echo(f"  signed by: {', '.join(verdict.signers) or 'nobody'}")
    click.echo("  may be used" if verdict.ok else "  may NOT be used:")
    for reason in verdict.reasons:
        click.echo(f"    {reason}")
