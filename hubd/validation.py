"""What hubd's typed doors are built from, and how their refusals read.

Everything hubd reads from outside is a pydantic model: the formats hubd defines refuse unknown
keys (:class:`Closed`), the external ones (Sigstore, DSSE, in-toto) keep what their specs let
producers add (:class:`Open`). A refusal names the field as a user would write it,
``rules[1].signers[0]`` or ``llm[0].repo`` (:func:`location`), in one line (:func:`problem`),
never pydantic's dump and never the offending value, which may be hostile or huge.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from .errors import UnsafePath
from .refs import OID, SHA256, is_commit, is_git_oid, is_repo_id, is_sha256, safe_relpath


def refusal(why: str, kind: str = "invalid") -> PydanticCustomError:
    """A validation error whose message is ``why`` verbatim (a file name may hold braces)."""
    return PydanticCustomError(kind, "{why}", {"why": why})


def matching(check: Callable[[str], bool], what: str) -> AfterValidator:
    """The test the store applies (hubd.refs), as a field validator."""

    def validate(value: str) -> str:
        if not check(value):
            raise refusal(f"not {what}")
        return value

    return AfterValidator(validate)


def pattern(regex: str) -> WithJsonSchema:
    """What JSON Schema says of a string a validator checks in code."""
    return WithJsonSchema({"type": "string", "pattern": regex})


def _safe_path(value: str) -> str:
    try:
        return safe_relpath(value)
    except UnsafePath as exc:
        raise refusal(exc.message, "unsafe_path") from None


# What the store checks before it builds a path (hubd.refs), and what the schemas show of it.
Sha256 = Annotated[
    StrictStr, matching(is_sha256, "a sha256 (64 lowercase hex digits)"), pattern(f"^{SHA256}$")
]
Commit = Annotated[
    StrictStr, matching(is_commit, "a commit id (40 lowercase hex digits)"), pattern(f"^{OID}$")
]
GitOid = Annotated[
    StrictStr, matching(is_git_oid, "a git blob id (40 lowercase hex digits)"), pattern(f"^{OID}$")
]
RepoId = Annotated[
    StrictStr,
    matching(is_repo_id, "a repo id (org/name)"),
    pattern("^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"),
]
FilePath = Annotated[
    StrictStr,
    AfterValidator(_safe_path),
    pattern(r"^(?!/)(?![A-Za-z]:)(?!.*(^|/)\.{1,2}(/|$))(?!.*//)[^\\\u0000]+$"),
]
Size = Annotated[StrictInt, Field(ge=0)]


def listed(value: Any) -> Any:
    """One value written alone stands for a list of it (``repo = "acme/*"``)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise PydanticCustomError("one_or_more", "Input should be a string or a list of them")
    return value


Glob = Annotated[StrictStr, Field(min_length=1)]
Globs = Annotated[
    list[Glob],
    Field(min_length=1),
    BeforeValidator(
        listed, json_schema_input_type=Glob | Annotated[list[Glob], Field(min_length=1)]
    ),
]


class Closed(BaseModel):
    """A format hubd defines: every key is known, nothing else is accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Open(BaseModel):
    """A part of an external format whose spec allows more fields: kept, and passed on."""

    model_config = ConfigDict(extra="allow", frozen=True)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # a key shown as is; others quoted


def _step(part: int | str) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if part == "[key]":  # pydantic's mark for a mapping's key, not its value
        return " (the name)"
    return f".{part}" if _PLAIN.fullmatch(part) else f"[{part[:64]!r}]"


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a user writes it: ``revisions[1].files[0].sha256``."""
    return "".join(_step(part) for part in loc).lstrip(".")


def problem(exc: ValidationError) -> str:
    """The first error as ``path: what is wrong`` (``rules[1].license[0]: Input should be …``)."""
    error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = location(error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]
