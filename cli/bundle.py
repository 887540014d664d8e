"""`hubd export`, `hubd import` and `hubd listing`: revisions across an air gap."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hubd.bundle.export import export_bundle
from hubd.bundle.format import Listing, listing, write_listing
from hubd.bundle.importer import import_bundle
from hubd.ops.sign import export_revision
from hubd.refs import RepoRef

from .common import json_option, open_context
from .output import emit_json, human_bytes, progress_wanted
from .progress import BarProgress


@click.command("export")
@click.argument("repos", nargs=-1, required=True)
@click.option("-o", "--output", help="Bundle file to write (a tar), or - for stdout.")
@click.option(
    "--since",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="The far side's `hubd listing`: leave out the blobs and revisions it holds.",
)
@click.option(
    "--to", "to", type=click.Path(path_type=Path), help="New directory: real files + model.sig."
)
@json_option
@click.pass_obj
def export_cmd(
    obj: dict[str, Any],
    repos: tuple[str, ...],
    output: str | None,
    since: Path | None,
    to: Path | None,
    as_json: bool,
) -> None:
    """Export REPO[@rev]s: a bundle for `hubd import` (-o), or one revision's files (--to)."""
    if (output is None) == (to is None):
        raise click.UsageError("give either -o BUNDLE.tar or --to DIR")
    refs = [RepoRef.parse(repo) for repo in repos]
    if to is not None:
        if len(refs) > 1 or since:
            raise click.UsageError("--to takes one revision and no --since")
        exported = export_revision(open_context(obj), refs[0], to)
        if as_json:
            emit_json(exported.to_json())
            return
        click.echo(
            f"exported {exported.repo}@{exported.commit[:12]}: {exported.files} files, "
            f"{human_bytes(exported.bytes)} to {exported.directory}"
        )
        click.echo(
            f"  check it: model_signing verify key {exported.directory} --signature "
            f"{exported.signature} --public_key node.pub  (from `hubd keys show --public`)"
        )
        return
    if output == "-" and as_json:
        raise click.UsageError("-o - writes the bundle to stdout: no room for --json")
    context = open_context(obj)
    far_side = Listing.read(since) if since else None
    target = sys.stdout.buffer if output == "-" else Path(str(output))
    bars = BarProgress() if progress_wanted(False, as_json) else None
    result = export_bundle(context, refs, target, far_side, bars)
    if as_json:
        emit_json(result.to_json())
        return
    for rev in result.revisions:
        click.echo(f"{rev['repo']}@{rev['commit'][:12]}  refs: {', '.join(rev['refs']) or '-'}")
    for rev in result.skipped_revisions:
        click.echo(f"{rev['repo']}@{rev['commit'][:12]}  left out: {result.since} has it")
    skipped = f", {result.skipped_blobs} left out" if result.since else ""
    click.echo(
        f"exported {len(result.revisions)} revision(s), {result.blobs} blobs "
        f"({human_bytes(result.bytes)}){skipped} to {result.bundle}",
        err=output == "-",
    )


@click.command("import")
@click.argument("bundle")
@json_option
@click.pass_obj
def import_cmd(obj: dict[str, Any], bundle: str, as_json: bool) -> None:
    """Import BUNDLE (a tar from `hubd export -o`, or - for stdin): all of it, or nothing."""
    source = sys.stdin.buffer if bundle == "-" else Path(bundle)
    bars = BarProgress() if progress_wanted(False, as_json) else None
    result = import_bundle(open_context(obj), source, bars)
    if as_json:
        emit_json(result.to_json())
        return
    trusted = (
        f"trusted as {result.exporter_trusted_as}" if result.exporter_trusted_as else "untrusted"
    )
    click.echo(f"bundle from {result.exporter} (key {result.exporter_key[:16]}…, {trusted})")
    for rev in result.revisions:
        signers = ", ".join(rev["signers"]) or "unsigned"
        refs = ", ".join(rev["refs"]) or "-"
        click.echo(
            f"{rev['status']:<15} {rev['repo']}@{rev['commit'][:12]}  refs: {refs}  "
            f"signed by: {signers}"
        )
    if result.already_present:
        click.echo("already present: nothing changed")
    else:
        click.echo(f"added {result.blobs_added} blobs ({human_bytes(result.bytes_added)})")


@click.command("listing")
@click.option("-o", "--output", required=True, help="Listing file to write, or - for stdout.")
@json_option
@click.pass_obj
def listing_cmd(obj: dict[str, Any], output: str, as_json: bool) -> None:
    """Write what this node holds, for `hubd export --since` on the other side of an air gap."""
    context = open_context(obj)
    if output == "-":
        emit_json(listing(context).model_dump(mode="json"))
        return
    written = write_listing(context, Path(output))
    summary = {
        "listing": output,
        "node": written.node,
        "revisions": len(written.revisions),
        "blobs": len(written.blobs),
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"listed {summary['revisions']} revisions and {summary['blobs']} blobs of "
        f"{summary['node']} in {output}"
    )
