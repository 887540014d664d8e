"""The `hubd` command line: parse, call the core, print. No logic of its own."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hubd import __version__
from hubd.catalog.queries import get_repo, list_repos
from hubd.catalog.views import repo_detail, repo_summary
from hubd.config import load_settings, setting_docs
from hubd.context import Context
from hubd.errors import HubdError, VerificationFailed
from hubd.gc import collect, remove
from hubd.mirror import MirrorResult, mirror
from hubd.refs import RepoRef
from hubd.verify.blobs import verify_store

from .output import emit_json, fail, human_bytes, progress_wanted, table
from .progress import BarProgress

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def open_context(obj: dict[str, Any], **overrides: Any) -> Context:
    return Context.open(load_settings(home=obj.get("home"), **overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path), help="hubd home (default $HUBD_HOME).")
@click.version_option(__version__, prog_name="hubd")
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """hubd: mirror, verify and catalog open-weight models."""
    ctx.obj = {"home": home}


@cli.command("mirror")
@click.argument("repo")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--with-base", is_flag=True, help="For an adapter, mirror its base model too.")
@click.option("--endpoint", help="Hugging Face endpoint (default $HF_ENDPOINT or huggingface.co).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Files in parallel.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@json_option
@click.pass_obj
def mirror_cmd(
    obj: dict[str, Any],
    repo: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    with_base: bool,
    endpoint: str | None,
    concurrency: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Mirror REPO (org/name[@revision]) into the store, verifying every byte."""
    ref = RepoRef.parse(repo)
    context = open_context(obj, endpoint=endpoint, concurrency=concurrency)
    progress = BarProgress() if progress_wanted(quiet, as_json) else None
    result = asyncio.run(
        mirror(
            context, ref, include=include, exclude=exclude, with_base=with_base, progress=progress
        )
    )
    if as_json:
        emit_json(result.to_json())
    elif not quiet:
        _print_mirror(result)


def _print_mirror(result: MirrorResult) -> None:
    where = f"{result.repo}@{result.revision}"
    if result.up_to_date:
        click.echo(
            f"{where} is up to date ({result.commit[:12]}, {result.files} files); no bytes moved"
        )
    else:
        click.echo(
            f"mirrored {where} -> {result.commit[:12]}: {result.files} files, "
            f"{human_bytes(result.bytes_transferred)} transferred, "
            f"{human_bytes(result.bytes_reused)} reused, {result.seconds:.1f} s"
        )
    if result.is_adapter:
        click.echo(f"  adapter for {result.base_model or 'an unknown base model'}")
    click.echo(f"  snapshot: {result.snapshot}")
    if result.base is not None:
        _print_mirror(result.base)


@cli.command("ls")
@json_option
@click.pass_obj
def ls_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """List the repos in the catalog."""
    context = open_context(obj)
    with context.catalog() as session:
        rows = [repo_summary(repo) for repo in list_repos(session)]
    if as_json:
        emit_json(rows)
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


@cli.command("show")
@click.argument("repo")
@json_option
@click.pass_obj
def show_cmd(obj: dict[str, Any], repo: str, as_json: bool) -> None:
    """Show a repo's revisions, files, card and provenance."""
    ref = RepoRef.parse(repo)
    context = open_context(obj)
    with context.catalog() as session:
        detail = repo_detail(get_repo(session, ref.repo_id))
    if as_json:
        emit_json(detail)
        return
    click.echo(f"{detail['repo']}  ({detail['kind']}, license: {detail['license'] or 'unknown'})")
    for rev in detail["revisions"]:
        refs = ", ".join(rev["refs"]) or "-"
        click.echo(f"\nrevision {rev['commit']}  refs: {refs}  state: {rev['state']}")
        click.echo(f"  mirrored {rev['mirrored_at'][:19]} from {rev['source']}")
        if rev["base_model"]:
            relation = "adapter for" if rev["is_adapter"] else "based on"
            click.echo(f"  {relation} {rev['base_model']}")
        for hop in rev["provenance"]:
            click.echo(
                f"  provenance #{hop['hop']}: {hop['source']} @ {hop['commit'][:12]} "
                f"-> {hop['node']} ({hop['client']}, {hop['fetched_at'][:19]})"
            )
        table(
            ["  FILE", "SIZE", "SHA256"],
            [[f"  {f['path']}", human_bytes(f["size"]), f["sha256"][:16]] for f in rev["files"]],
        )


@cli.command("verify")
@click.argument("repo", required=False)
@json_option
@click.pass_obj
def verify_cmd(obj: dict[str, Any], repo: str | None, as_json: bool) -> None:
    """Re-hash stored blobs (of REPO, or all); exit 1 on any mismatch."""
    repo_id = RepoRef.parse(repo).repo_id if repo else None
    context = open_context(obj)
    report = verify_store(context, repo_id)
    if as_json:
        emit_json(report.to_json())
    else:
        for d in report.damaged:
            state = "missing" if d.actual is None else f"sha256 {d.actual} != {d.expected}"
            click.echo(f"DAMAGED {d.repo}@{d.commit[:12]} {d.path}: {state}")
        click.echo(
            f"verified {report.blobs} blobs ({human_bytes(report.bytes)}) in "
            f"{report.revisions} revisions: "
            + ("all ok" if report.ok else f"{len(report.damaged)} damaged file(s)")
        )
    if not report.ok:
        raise VerificationFailed(
            f"{len(report.damaged)} damaged file(s) in the store",
            hint="re-mirror the named revisions to repair them",
        )


@cli.command("rm")
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


@cli.command("gc")
@click.option("--partials", is_flag=True, help="Also delete interrupted transfers.")
@json_option
@click.pass_obj
def gc_cmd(obj: dict[str, Any], partials: bool, as_json: bool) -> None:
    """Delete blobs that no revision references."""
    result = collect(open_context(obj), partials=partials)
    if as_json:
        emit_json({"removed": result.removed, "freed_bytes": result.freed_bytes})
    else:
        click.echo(f"removed {result.removed} file(s), freed {human_bytes(result.freed_bytes)}")


@cli.command("config")
@json_option
@click.pass_obj
def config_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """Show the effective settings and where each can be set."""
    settings = load_settings(home=obj.get("home"))
    rows = []
    for doc in setting_docs():
        value = getattr(settings, doc.name)
        shown = "(set)" if doc.name == "token" and value else value
        rows.append({"key": doc.key, "env": doc.env, "value": shown, "help": doc.help})
    if as_json:
        emit_json(rows)
    else:
        table(["SETTING", "ENV", "VALUE"], [[r["key"], r["env"], r["value"]] for r in rows])


def main(argv: list[str] | None = None) -> int:
    """Entry point: one place turns every error into `hubd: error: …` and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="hubd", standalone_mode=False)
    except click.UsageError as exc:
        if exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
        click.echo(f"hubd: error: {exc.format_message()}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"hubd: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except HubdError as exc:
        if os.environ.get("HUBD_DEBUG"):
            raise
        return fail(exc)
    except (KeyboardInterrupt, click.Abort):
        click.echo("\nhubd: interrupted; run the same command again to resume", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
