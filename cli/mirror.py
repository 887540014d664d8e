"""`hubd mirror`."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from hubd.config import Settings, load_settings
from hubd.errors import InvalidRequest
from hubd.ops.mirror import MirrorResult, mirror_requested
from hubd.ops.requests import MirrorRequest

from .common import context_for, json_option, mirror_request
from .output import emit_json, human_bytes, progress_wanted
from .progress import BarProgress, DaemonBar


@click.command("mirror")
@click.argument("repo")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files matching (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching (repeatable).")
@click.option("--with-base", is_flag=True, help="For an adapter, mirror its base model too.")
@click.option("--endpoint", help="Hugging Face endpoint (default $HF_ENDPOINT or huggingface.co).")
@click.option("--from", "from_", metavar="PEER|URL", help="Only this peer (a name or a URL).")
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
    from_: str | None,
    concurrency: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Mirror REPO (org/name[@revision]) into the store, verifying every byte.

    With daemon.url set the daemon does it (as a job) and this command follows it.
    """
    request = mirror_request(repo, include, exclude, with_base, from_)
    settings = load_settings(home=obj.get("home"), endpoint=endpoint, concurrency=concurrency)
    if daemon_url := settings.daemon_url:
        if endpoint or concurrency:
            raise InvalidRequest("--endpoint and --concurrency do not apply to daemon jobs")
        result = asyncio.run(_via_daemon(daemon_url, settings, request, quiet or as_json))
    else:
        progress = BarProgress() if progress_wanted(quiet, as_json) else None
        result = asyncio.run(mirror_requested(context_for(settings), request, progress))
    if as_json:
        emit_json(result.model_dump(mode="json"))
    elif not quiet:
        _print_mirror(result)


async def _via_daemon(
    daemon_url: str, settings: Settings, request: MirrorRequest, silent: bool
) -> MirrorResult:
    from hubd.cluster.client import DaemonClient  # aiohttp: only a daemon job needs it here

    client = DaemonClient(daemon_url, settings.daemon_token_file, settings.timeout)
    job = await client.submit(request)
    if not silent:
        click.echo(f"queued as job {job['id']} on {daemon_url}", err=True)
    bar = DaemonBar() if not silent and progress_wanted(False, False) else None
    done = await client.follow(job["id"], bar.update if bar else None)
    if bar is not None:
        bar.close()
    return MirrorResult.model_validate(done["result"])


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
    if result.review:
        click.echo(f"  needs review: {result.review}")
    if result.base is not None:
        _print_mirror(result.base)
