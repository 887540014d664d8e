"""`hubd config`: the effective settings and where each can be set."""

from __future__ import annotations

from typing import Any

import click

from hubd.config import load_settings, setting_docs

from .common import json_option
from .output import emit_json, table


@click.command("config")
@json_option
@click.pass_obj
def config_cmd(obj: dict[str, Any], as_json: bool) -> None:
    """Show the effective settings and where each can be set."""
    settings = load_settings(home=obj.get("home"))
    rows = []
    for doc in setting_docs():
        value = getattr(settings, doc.name)
        shown = _token_shown(value) if doc.name == "token" else value
        rows.append({"key": doc.key, "env": doc.env, "value": shown, "help": doc.help})
    if as_json:
        emit_json(rows)
    else:
        table(["SETTING", "ENV", "VALUE"], [[r["key"], r["env"], r["value"]] for r in rows])


def _token_shown(value: str | None) -> str | None:
    """Never the token itself: whether one is set, or which one huggingface_hub would use."""
    if value:
        return "(set)"
    from huggingface_hub import get_token

    return "(hf auth login)" if get_token() else None
