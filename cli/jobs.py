"""`hubd jobs` and `hubd watch`: the daemon's queue and the repos it keeps in sync."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import click

from hubd.cluster.client import DaemonClient
from hubd.cluster.jobs import enqueue, list_jobs
from hubd.cluster.watch import add_watch, list_watches, parse_every, remove_watch
from hubd.config import load_settings

from .common import context_for, json_option, mirror_request, open_context
from .output import emit_json, human_bytes, table


@click.group("jobs", invoke_without_command=True)
@json_option
@click.pass_context
def jobs_group(ctx: click.Context, as_json: bool) -> None:
    """Queued, running and finished mirror jobs (the newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    jobs = list_jobs(open_context(ctx.obj))
    if as_json:
        emit_json([j.to_json() for j in jobs])
        return
    table(
        ["ID", "STATE", "REPO", "PROGRESS", "NODE", "ERROR"],
        [
            [
                j.id,
                j.state,
                j.repo,
                f"{human_bytes(j.bytes_done)}/{human_bytes(j.bytes_total)}"
                if j.bytes_total
                else "-",
                j.node or "-",
                (j.error or "")[:60],
            ]
            for j in jobs
        ],
    )


@jobs_group.command("add")
@click.argument("repo")
@click.option("--include", multiple=True, metavar="GLOB")
@click.option("--exclude", multiple=True, metavar="GLOB")
@click.option("--with-base", is_flag=True)
@click.option("--from", "from_", metavar="PEER|URL")
@json_option
@click.pass_obj
def add_cmd(
    obj: dict[str, Any],
    repo: str,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    with_base: bool,
    from_: str | None,
    as_json: bool,
) -> None:
    """Queue a mirror of REPO for the daemon (same options as `hubd mirror`)."""
    request = mirror_request(repo, include, exclude, with_base, from_)
    settings = load_settings(home=obj.get("home"))
    if settings.daemon_url:
        client = DaemonClient(settings.daemon_url, settings.daemon_token_file, settings.timeout)
        job = asyncio.run(client.submit(request))
    else:
        job = enqueue(context_for(settings), request).to_json()
    if as_json:
        emit_json(job)
    else:
        click.echo(f"job {job['id']}: {job['repo']} {job['state']}")


@click.group("watch")
def watch_group() -> None:
    """Repos the daemon keeps in sync."""


@watch_group.command("add")
@click.argument("repo")
@click.option("--every", default="6h", show_default=True, help="Interval: 30m, 6h, 1d …")
@click.pass_obj
def watch_add(obj: dict[str, Any], repo: str, every: str) -> None:
    """Keep REPO (org/name[@revision]) in sync; the first sync is due at once."""
    watch = add_watch(open_context(obj), repo, parse_every(every))
    click.echo(f"watching {watch.repo} every {every}")


@watch_group.command("ls")
@json_option
@click.pass_obj
def watch_ls(obj: dict[str, Any], as_json: bool) -> None:
    """List watched repos and when each is next due."""
    watches = list_watches(open_context(obj))
    if as_json:
        emit_json([{**asdict(w), "next_run_at": w.next_run_at.isoformat()} for w in watches])
        return
    table(
        ["REPO", "EVERY", "NEXT", "LAST JOB"],
        [
            [w.repo, f"{w.every_seconds}s", w.next_run_at.isoformat()[:19], w.last_job_id or "-"]
            for w in watches
        ],
    )


@watch_group.command("rm")
@click.argument("repo")
@click.pass_obj
def watch_rm(obj: dict[str, Any], repo: str) -> None:
    """Stop watching REPO."""
    remove_watch(open_context(obj), repo)
    click.echo(f"no longer watching {repo}")
