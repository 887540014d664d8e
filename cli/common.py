"""What every command shares: the hubd Context from flags and environment, the --json flag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from hubd.config import load_settings
from hubd.context import Context

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def open_context(obj: dict[str, Any], **overrides: Any) -> Context:
    return Context.open(load_settings(home=obj.get("home"), **overrides))
