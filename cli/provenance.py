"""`hubd provenance`: a revision's chain of custody, its SLSA statements and its signers."""

from __future__ import annotations

from typing import Any

import click

from hubd.catalog.revisions import require_revision
from hubd.catalog.views import provenance_hop
from hubd.refs import RepoRef
from hubd.trust.keys import trusted_signers
from hubd.trust.policy import may_use
from hubd.trust.provenance import ProvenanceReport, chain_path, read_chain, verify_chain

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
        files = {f.path: f.sha256 for f in revision.files}
    verdict = may_use(context, ref.repo_id, commit)
    chain = read_chain(chain_path(context, ref.repo_id, commit))
    label = f"{ref.repo_id}@{commit[:12]}: provenance"
    attested = verify_chain(chain, trusted_signers(context), commit, files, label)
    report = ProvenanceReport.model_validate(
        {
            "repo": ref.repo_id,
            "commit": commit,
            "provenance": hops,
            "statements": [a.summary() for a in attested],
            **verdict.to_json(),
        }
    )
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    click.echo(f"{ref.repo_id}@{commit}")
    for hop in report.provenance:
        click.echo(
            f"  #{hop.hop} {hop.source} @ {hop.commit[:12]} -> {hop.node} "
            f"({hop.client}, {hop.fetched_at[:19]})"
        )
    for index, statement in enumerate(report.statements):
        by = statement.signer or f"untrusted key {statement.keyid[:16]}…"
        click.echo(
            f"  SLSA statement #{index} by {statement.builder} ({by}), "
            f"finished {statement.finished[:19]}"
        )
        if upstream := statement.upstream_signature:
            who = upstream.signer or f"untrusted key {upstream.key[:16]}…"
            click.echo(f"    the source's own model.sig: {upstream.status} ({who})")
    click.echo(f"  signed by: {', '.join(report.signers) or 'nobody'}")
    click.echo("  may be used" if report.ok else "  may NOT be used:")
    for reason in report.reasons:
        click.echo(f"    {reason}")
