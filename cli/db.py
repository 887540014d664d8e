"""`hubd db`: the catalog's schema, for operators who migrate before starting daemons."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import make_url

from hubd.catalog.db import HEAD, catalog_version, upgrade_catalog
from hubd.config import load_settings

from .common import json_option
from .output import emit_json


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.group("db")
def db_group() -> None:
    """The catalog database (catalog.url): schema version and migrations."""


@db_group.command("upgrade")
@json_option
@click.pass_obj
def upgrade_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """Apply the catalog's pending migrations (every hubd command also does on open)."""
    url = load_settings(home=obj.get("home")).catalog_url
    before, after = upgrade_catalog(url)
    if as_json:
        emit_json({"catalog": _shown(url), "before": before, "after": after, "head": HEAD})
    elif before == after:
        click.echo(f"catalog {_shown(url)}: already at {after} (head)")
    else:
        click.echo(f"catalog {_shown(url)}: upgraded {before or 'empty'} -> {after} (head)")


@db_group.command("current")
@json_option
@click.pass_obj
def current_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """Show the catalog's schema version and whether it is the newest."""
    url = load_settings(home=obj.get("home")).catalog_url
    version = catalog_version(url)
    if as_json:
        emit_json({"catalog": _shown(url), "current": version, "head": HEAD})
    elif version == HEAD:
        click.echo(f"catalog {_shown(url)}: {version} (head)")
    else:
        click.echo(
            f"catalog {_shown(url)}: {version or 'empty'}, head is {HEAD}: run `hubd db upgrade`"
        )
