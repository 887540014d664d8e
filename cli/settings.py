"""`hubd config`: the effective settings and where each can be set."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from hubd.config import load_settings, setting_docs

from .common import json_option
from .output import emit_json, table


@click.command("config")
@json_option
@click.pass_obj
def config_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """Show the effective settings and where each can be set."""
    values = load_settings(home=obj.get("home")).model_dump(mode="json")
    rows = []
    for doc in setting_docs():
        value = values[doc.name]
        if doc.name == "token":
            shown = _token_shown(value)
        elif doc.name == "catalog_url":
            shown = _url_shown(value)
        else:
            shown = value
        rows.append({"key": doc.key, "env": doc.env, "value": shown, "help": doc.help})
    if as_json:
        emit_json(rows)
    else:
        table(["SETTING", "ENV", "VALUE"], [[r["key"], r["env"], r["value"]] for r in rows])


def _url_shown(url: str) -> str:
    """A PostgreSQL catalog's URL without its password (output gets pasted into tickets)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _token_shown(value: str | None) -> str | None:
    """Never the token itself: whether one is set, or which one huggingface_hub would use."""
    if value:
        return "(set)"
    from huggingface_hub import get_token

    return "(hf auth login)" if get_token() else None
