"""Printing for people and for scripts, and the one table from errors to exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from hubd.errors import HubdError


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    click.echo(format_table(headers, rows))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fail(exc: HubdError) -> int:
    """Print ``hubd: error: …`` (and a hint) to stderr; return the error class's exit code."""
    click.echo(f"hubd: error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hubd: hint: {exc.hint}", err=True)
    return exc.exit_code


def progress_wanted(quiet: bool, as_json: bool) -> bool:
    return not quiet and not as_json and sys.stderr.isatty()
