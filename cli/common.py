"""What commands share: the hubd Context from flags and environment, --json, mirror requests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from hubd.config import Settings
    from hubd.context import Context
    from hubd.ops.requests import MirrorRequest

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def open_context(obj: dict[str, Any], **overrides: Any) -> Context:
    from hubd.config import load_settings

    return context_for(load_settings(home=obj.get("home"), **overrides))


def context_for(settings: Settings) -> Context:
    """A Context the command holds until it ends (click closes it, whatever the outcome).

    Imported here, not at the top: a command that finds its answer without the catalog (a
    warm `hubd run`) never loads SQLAlchemy.
    """
    from hubd.context import Context

    return click.get_current_context().with_resource(Context.open(settings))


def mirror_request(
    repo: str, include: Sequence[str], exclude: Sequence[str], with_base: bool, from_: str | None
) -> MirrorRequest:
    """The flags of `hubd mirror` and `hubd jobs add`, checked as the HTTP API checks a body."""
    from hubd.ops.requests import MirrorRequest

    return MirrorRequest.parse(
        {
            "repo": repo,
            "include": include,
            "exclude": exclude,
            "with_base": with_base,
            "from": from_,
        }
    )
