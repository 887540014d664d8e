"""What the registry holds: `hubd ls`, `show`, `verify`, `rm`, `gc`.

What only one command uses is imported in it (the listing, the JSON views, the trust stack):
`hubd verify` pays for hashing, not for the others' start-up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from hubd.catalog.revisions import get_repo
from hubd.context import Context
from hubd.errors import SignatureInvalid, VerificationFailed
from hubd.ops.gc import collect, remove
from hubd.ops.verify import Damage, SignatureCheck, VerifyReport, relink, verify_store
from hubd.refs import RepoRef

from .common import json_option, open_context
from .output import emit_json, human_bytes, table


@click.command("ls")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Repos per page (0: all of them).",
)
@click.option("--after", metavar="REPO", help="Start after this repo id (the previous `next`).")
@click.option("--kind", type=click.Choice(["model", "adapter"]), help="Only models or adapters.")
@click.option("--org", help="Only the repos of this organisation.")
@click.option(
    "--pending",
    is_flag=True,
    help="Only the revisions a pull-through holds in part (`hubd mirror` completes one).",
)
@json_option
@click.pass_obj
def ls_cmd(
    obj: dict[str, Any],
    limit: int,
    after: str | None,
    kind: str | None,
    org: str | None,
    pending: bool,
    as_json: bool,
) -> None:
    """List the repos in the catalog by repo id, a page at a time (verified revisions)."""
    context = open_context(obj)
    with context.catalog() as session:
        from hubd.catalog.listing import repo_page

        page = repo_page(
            session, limit=limit or None, after=after, kind=kind, org=org, pending=pending
        )
    rows = page.repos
    if as_json:
        emit_json({"repos": rows, "next": page.next})
        return
    table(
        ["REPO", "KIND", "REVISIONS", "REFS", "LICENSE", "MIRRORED"],
        [
            [
                r["repo"],
                r["kind"],
                r["revisions"],
                ",".join(f"{k}={v[:7]}" for k, v in r["refs"].items()),
                r["license"],
                (r["mirrored_at"] or "")[:19],
            ]
            for r in rows
        ],
    )
    if page.next is not None:
        click.echo(f"hubd: more after {page.next}: hubd ls --after {page.next}", err=True)


@click.command("show")
@click.argument("repo")
@json_option
@click.pass_obj
def show_cmd(obj: dict[str, Any], repo: str, as_json: bool) -> None:
    """Show a repo's revisions, files, card and provenance."""
    ref = RepoRef.parse(repo)
    context = open_context(obj)
    with context.catalog() as session:
        from hubd.catalog.views import repo_detail

        detail = repo_detail(get_repo(session, ref.repo_id))
    if as_json:
        emit_json(detail.model_dump(mode="json"))
        return
    click.echo(f"{detail.repo}  ({detail.kind}, license: {detail.license or 'unknown'})")
    for rev in detail.revisions:
        refs = ", ".join(rev.refs) or "-"
        click.echo(f"\nrevision {rev.commit}  refs: {refs}  state: {rev.state}")
        click.echo(f"  mirrored {rev.mirrored_at.isoformat()[:19]} from {rev.source}")
        if rev.base_model:
            relation = "adapter for" if rev.is_adapter else "based on"
            click.echo(f"  {relation} {rev.base_model}")
        for hop in rev.provenance:
            click.echo(
                f"  provenance #{hop.hop}: {hop.source} @ {hop.commit[:12]} "
                f"-> {hop.node} ({hop.client}, {hop.fetched_at.isoformat()[:19]})"
            )
        table(
            ["  FILE", "SIZE", "SHA256"],
            [[f"  {f.path}", human_bytes(f.size), f.sha256[:16]] for f in rev.files],
        )


@click.command("verify")
@click.argument("repo", required=False)
@click.option("--signatures", is_flag=True, help="Also check signatures and the trust policy.")
@click.option(
    "--repair", is_flag=True, help="Quarantine damaged blobs and fetch them again from a source."
)
@json_option
@click.pass_obj
def verify_cmd(
    obj: dict[str, Any], repo: str | None, signatures: bool, repair: bool, as_json: bool
) -> None:
    """Re-hash stored blobs (of REPO, or all); exit 1 on any damage left."""
    repo_id = RepoRef.parse(repo).repo_id if repo else None
    context = open_context(obj)
    report = verify_store(context, repo_id)
    if repair and report.mislinked:
        relink(context, report.mislinked)
        report.mislinked = []
    if repair and report.damaged:
        from hubd.ops.repair import repair as repair_blobs

        report.repairs = asyncio.run(repair_blobs(context, report.damaged))
    if not as_json and (report.damaged or report.mislinked or not signatures):
        _print_verify(report)
    if signatures and report.ok:
        verify_signatures_cmd(context, repo_id, as_json, report)
        return
    if as_json:
        emit_json(report.model_dump(mode="json"))
    if report.repairs is not None and not report.ok:
        raise VerificationFailed(
            f"{len(report.unrepaired)} damaged file(s) could not be repaired",
            hint="the damaged copies stay in the store's quarantine directory; once a peer or "
            "the Hub serves the revision again, re-run `hubd verify --repair`",
        )
    if not report.ok:
        raise VerificationFailed(
            f"{len(report.damaged) + len(report.mislinked)} damaged file(s) in the store",
            hint="`hubd verify --repair` fetches them again from a peer or the Hub",
        )


def _print_verify(report: VerifyReport) -> None:
    def where(d: Damage) -> str:
        return f"{d.repo}@{d.commit[:12]} {d.path}"

    for d in report.damaged:
        state = "missing" if d.actual is None else f"sha256 {d.actual} != {d.expected}"
        click.echo(f"DAMAGED {where(d)}: {state}")
    for m in report.mislinked:
        state = "no link" if m.actual is None else f"links to {m.actual}, not blob {m.expected}"
        click.echo(f"MISLINKED {m.repo}@{m.commit[:12]} {m.path}: {state}")
    for r in report.repairs or ():
        names = ", ".join(where(d) for d in report.damaged if d.expected == r.sha256)
        if r.repaired:
            source = r.source or "a source (the revision's mirror failed on another file)"
            click.echo(f"REPAIRED {names} from {source}")
        else:
            click.echo(f"STILL DAMAGED {names}: {r.reason}")
            if r.quarantine:
                click.echo(f"    damaged copy kept in {r.quarantine}")
    bad = len(report.damaged) + len(report.mislinked)
    summary = "all ok" if not bad else f"{bad} damaged file(s)"
    if report.repairs is not None and report.damaged:
        summary += f", {len(report.damaged) - len(report.unrepaired)} repaired"
    click.echo(
        f"verified {report.blobs} blobs ({human_bytes(report.bytes)}) in "
        f"{report.revisions} revisions: {summary}"
    )
    if report.elsewhere:
        click.echo(f"  {report.elsewhere} blob(s) only other nodes of this catalog hold: theirs")


def verify_signatures_cmd(
    context: Context, repo_id: str | None, as_json: bool, report: VerifyReport
) -> None:
    """The signature half of `hubd verify --signatures`, run once every hash matched."""
    from hubd.trust.policy import verify_signatures

    results = verify_signatures(context, repo_id)
    bad = [reason for *_, v in results for reason in v.reasons]
    if as_json:
        report.signatures = [
            SignatureCheck(repo=r, commit=c, ok=v.ok, reasons=v.reasons, signers=v.signers)
            for r, c, v in results
        ]
        emit_json(report.model_dump(mode="json"))
    else:
        click.echo(f"hashes: {report.blobs} blobs all ok")
        for r, c, v in results:
            signed = ", ".join(v.signers) or "unsigned"
            click.echo(f"{'OK ' if v.ok else 'BAD'} {r}@{c[:12]} signed by: {signed}")
            for reason in v.reasons:
                click.echo(f"    {reason}")
    if bad:
        raise SignatureInvalid(bad[0] if len(bad) == 1 else f"{bad[0]} (and {len(bad) - 1} more)")


@click.command("rm")
@click.argument("repo")
@json_option
@click.pass_obj
def rm_cmd(obj: dict[str, Any], repo: str, as_json: bool) -> None:
    """Remove REPO[@revision] from the catalog and snapshots (blobs stay until `hubd gc`)."""
    ref = RepoRef.parse(repo)
    commits = remove(open_context(obj), ref)
    if as_json:
        emit_json({"repo": ref.repo_id, "removed": commits})
    else:
        for commit in commits:
            click.echo(f"removed {ref.repo_id}@{commit[:12]}")
        click.echo("run `hubd gc` to free the space of blobs nothing references")


@click.command("gc")
@click.option("--partials", is_flag=True, help="Also delete interrupted transfers.")
@json_option
@click.pass_obj
def gc_cmd(obj: dict[str, Any], partials: bool, as_json: bool) -> None:
    """Delete blobs that no revision references."""
    result = collect(open_context(obj), partials=partials)
    if as_json:
        emit_json(
            {"removed": result.removed, "freed_bytes": result.freed_bytes, "strays": result.strays}
        )
    else:
        click.echo(f"removed {result.removed} file(s), freed {human_bytes(result.freed_bytes)}")
        for stray in result.strays:
            click.echo(f"left alone (not a blob): {stray}", err=True)
