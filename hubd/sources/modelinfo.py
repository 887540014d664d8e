"""The model info a source answers with, read as untrusted input.

Every field that later names a path, a catalog row or a header is checked here, once, before
anything is written: the commit is 40 lowercase hex, an LFS digest 64, a git blob id 40, sizes are
non-negative integers that agree with ``lfs.size``, names pass :func:`hubd.refs.safe_relpath`
and form a list a directory can hold. Every file must declare a digest to verify it against.
A malformed answer is an :class:`UpstreamError` naming the field, never a traceback.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from ..errors import UpstreamError
from ..refs import check_file_set, safe_relpath
from ..validation import Commit, GitOid, Sha256, Size, location
from .base import RemoteFile

# A real model info is kilobytes; a repo of 100,000 files is some 20 MiB of it.
INFO_LIMIT = 32 * 1024 * 1024
MAX_FILES = 100_000
CARD_DEPTH = 32  # model-index cards nest some 6 levels deep


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DeclaredLfs(_Model):
    sha256: Sha256
    size: Size
    pointerSize: Size | None = None  # noqa: N815 - the Hub's field name


class DeclaredSibling(_Model):
    rfilename: StrictStr
    size: Size | None = None
    blobId: GitOid | None = None  # noqa: N815 - the Hub's field name
    lfs: DeclaredLfs | None = None


class DeclaredModelInfo(_Model):
    """``GET /api/models/{repo}/revision/{rev}?blobs=true``, the fields hubd uses."""

    sha: Commit
    siblings: Annotated[list[DeclaredSibling], Field(min_length=1, max_length=MAX_FILES)]
    gated: StrictBool | StrictStr | None = None
    cardData: Any = None  # noqa: N815 - the Hub's field name

    @field_validator("cardData")
    @classmethod
    def _card(cls, value: Any) -> dict[str, Any]:
        """Only a mapping is card metadata (anything else is ignored); bounded in depth."""
        if not isinstance(value, dict):
            return {}
        if json_depth(value) > CARD_DEPTH:
            raise ValueError(f"nested deeper than {CARD_DEPTH} levels")
        return value


def json_depth(value: Any, limit: int = CARD_DEPTH + 1) -> int:
    """Nesting depth of a JSON value, counted no further than ``limit`` (no recursion)."""
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth + bool(level)


def _field(error: dict[str, Any], info: Any) -> str:
    """``siblings[3].lfs.sha256 (model.bin)``: where in the answer, and which file."""
    loc = error.get("loc", ())
    text = location(loc)
    if len(loc) > 1 and loc[0] == "siblings" and isinstance(loc[1], int):
        try:
            name = info["siblings"][loc[1]]["rfilename"]
        except (KeyError, IndexError, TypeError):
            name = None
        if isinstance(name, str):
            text += f" ({name[:80]!r})"
    return text or "the answer"


def parse_model_info(
    data: bytes, host: str, repo_id: str
) -> tuple[DeclaredModelInfo, tuple[RemoteFile, ...]]:
    """Validate a model info body; returns it and the files it declares, checked."""
    where = f"{host} answered {repo_id}'s model info with"
    if len(data) > INFO_LIMIT:
        raise UpstreamError(f"{where} more than {INFO_LIMIT} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        raise UpstreamError(f"{where} something that is not JSON") from None
    if not isinstance(raw, dict):
        raise UpstreamError(f"{where} a JSON {type(raw).__name__}, not an object")
    try:
        info = DeclaredModelInfo.model_validate(raw)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        raise UpstreamError(
            f"{where} a malformed {_field(dict(error), raw)}: {error['msg']}"
        ) from None
    files = tuple(_remote_file(s, host) for s in info.siblings)
    check_file_set(f.path for f in files)
    return info, files


def _remote_file(sibling: DeclaredSibling, host: str) -> RemoteFile:
    path = safe_relpath(sibling.rfilename)
    size = sibling.size
    if sibling.lfs is not None:
        if size is not None and size != sibling.lfs.size:
            raise UpstreamError(
                f"{host} declares {path} as {size} bytes but its LFS pointer as {sibling.lfs.size}"
            )
        size = sibling.lfs.size
    if size is None:
        raise UpstreamError(f"{host} did not declare the size of {path}")
    if sibling.lfs is None and sibling.blobId is None:
        raise UpstreamError(
            f"{host} declares no digest for {path} (no lfs.sha256, no blobId): "
            "nothing to verify its bytes against"
        )
    return RemoteFile(
        path=path,
        size=size,
        git_oid=sibling.blobId,
        sha256=sibling.lfs.sha256 if sibling.lfs else None,
    )
