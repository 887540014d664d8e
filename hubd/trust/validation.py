"""What the trust and audit file formats are built from, and how their errors read.

Policies, signature bundles and provenance statements are read through pydantic models: the
formats hubd defines refuse unknown keys (:class:`Closed`), the external ones (Sigstore, DSSE,
in-toto) keep what their specs let producers add (:class:`Open`). A refusal is one line that
names the field, ``rules[1].signers[0]: String should match pattern …`` (:func:`problem`), never
pydantic's dump and never the offending value, which may be hostile or huge.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError
from pydantic_core import PydanticCustomError

# The patterns hubd.refs checks with (is_sha256, is_commit), here for the schemas to show.
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Commit = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{40}$")]


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


def _step(part: int | str) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if part == "[key]":  # pydantic's mark for a mapping's key, not its value
        return " (the name)"
    return f".{part}" if part.isidentifier() else f"[{part[:64]!r}]"


def problem(exc: ValidationError) -> str:
    """The first error as ``path: what is wrong`` (``rules[1].license[0]: Input should be …``)."""
    error = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = "".join(_step(part) for part in error["loc"]).lstrip(".")
    return f"{where}: {error['msg']}" if where else error["msg"]
