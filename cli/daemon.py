"""`hubd daemon`: the HTTP API (Hugging Face-compatible, plus /api/hubd) over this registry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from hubd.daemon import run_daemon

from .common import open_context


@click.command("daemon")
@click.option("--host", help="Listen address (default: server.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port, 8080).")
@click.option(
    "--url-file", type=click.Path(path_type=Path), help="Write the listening URL here when ready."
)
@click.pass_obj
def daemon_cmd(
    obj: dict[str, Any], host: str | None, port: int | None, url_file: Path | None
) -> None:
    """Serve this registry over the Hugging Face API until SIGTERM or Ctrl-C."""
    context = open_context(obj, host=host, port=port)

    def ready(url: str) -> None:
        click.echo(f"hubd daemon: serving {context.settings.home} at {url}", err=True)
        if url_file is not None:
            tmp = url_file.with_name(f".{url_file.name}.tmp")
            tmp.write_text(url)
            tmp.replace(url_file)

    settings = context.settings
    asyncio.run(run_daemon(context, settings.host, settings.port, ready))
    click.echo("hubd daemon: stopped", err=True)
