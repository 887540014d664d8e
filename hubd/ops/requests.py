"""A mirror as a caller asks for it: the one type the CLI, the HTTP API and the job queue share.

Every door builds a :class:`MirrorRequest` (``hubd mirror`` and ``hubd jobs add`` from their
flags, ``POST /api/hubd/jobs`` from its body, a worker from the options a job row holds), so a
request is checked the same way wherever it comes from, and a row written before requests were
typed is checked again when it is read back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from ..errors import InvalidReference, InvalidRequest
from ..refs import RepoRef
from ..validation import problem

Glob = Annotated[str, Field(min_length=1, max_length=1000)]
Patterns = Annotated[list[Glob], Field(max_length=1000)]


class MirrorRequest(BaseModel):
    """A mirror of one repo: which files, whether its base model too, and from which source.

    ``include`` and ``exclude`` are lists of glob patterns; one string is one pattern (as
    huggingface_hub reads ``allow_patterns``), never the characters of a string. ``with_base``
    is a boolean; the strings ``"true"`` and ``"false"`` (what a form or a query sends) mean
    what they say, anything else is refused. Unknown keys are refused, so a typo is a 400
    naming the field, not a job that later does something else.
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, populate_by_name=True, title="A mirror request"
    )

    repo: str = Field(max_length=400, description="org/name, optionally @revision")
    include: Patterns = Field(default_factory=list, description="Glob patterns of files to take")
    exclude: Patterns = Field(default_factory=list, description="Glob patterns of files to skip")
    with_base: StrictBool = Field(default=False, description="Also mirror the base model")
    from_: str | None = Field(
        default=None,
        alias="from",
        min_length=1,
        max_length=2000,
        description="A configured peer (name or URL) or another node of this catalog",
    )

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        try:
            return str(RepoRef.parse(value))
        except InvalidReference as exc:
            raise ValueError(exc.message) from None

    @field_validator("include", "exclude", mode="before", json_schema_input_type=Glob | Patterns)
    @classmethod
    def _one_pattern(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return list(value) if isinstance(value, tuple) else value

    @field_validator(
        "with_base", mode="before", json_schema_input_type=bool | Literal["true", "false"]
    )
    @classmethod
    def _bool_text(cls, value: Any) -> Any:
        return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value

    @classmethod
    def parse(cls, data: Any) -> MirrorRequest:
        """Validate ``data``; else InvalidRequest naming each bad field (not echoing values)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid mirror request: {problem(exc)}") from None

    @property
    def ref(self) -> RepoRef:
        return RepoRef.parse(self.repo)

    def options(self) -> dict[str, Any]:
        """What a job row keeps beside its repo (read back through :meth:`parse`)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"repo"})
