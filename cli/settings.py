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
        shown = "(set)" if doc.name == "token" and value else value
        rows.append({"key": doc.key, "env": doc.env, "value": shown, "help": doc.help})
    if as_json:
        emit_json(rows)
    else:
        table(["SETTING", "ENV", "VALUE"], [[r["key"], r["env"], r["value"]] for r in rows])
