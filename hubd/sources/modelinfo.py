"""The model info a source answers with, read as untrusted input.

Every field that later names a path, a catalog row or a header is checked here, once, before
anything is written: the commit is 40 lowercase hex, an LFS digest 64, a git blob id 40, sizes are
non-negative integers that agree with ``lfs.size``, names pass :func:`hubd.refs.safe_relpath`
and form a list a directory can hold. Every file must declare a digest to verify it against;
where the model info lists a file without its size or digest (Olah lists names only), the
recursive tree is asked, validated as strictly, and must agree with whatever the model info says.
A malformed answer is an :class:`UpstreamError` naming the field, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from ..errors import UpstreamError
from ..refs import check_file_set, safe_relpath
from ..validation import Commit, GitOid, Sha256, Size, location, problem
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
    pointerSize: Size | None = None  # the Hub's field name


class DeclaredSibling(_Model):
    rfilename: StrictStr
    size: Size | None = None
    blobId: GitOid | None = None  # the Hub's field name
    lfs: DeclaredLfs | None = None


class DeclaredModelInfo(_Model):
    """``GET /api/models/{repo}/revision/{rev}?blobs=true``, the fields hubd uses."""

    sha: Commit
    siblings: Annotated[list[DeclaredSibling], Field(min_length=1, max_length=MAX_FILES)]
    gated: StrictBool | StrictStr | None = None
    cardData: Any = None  # the Hub's field name

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


def _load(data: bytes, where: str) -> Any:
    if len(data) > INFO_LIMIT:
        raise UpstreamError(f"{where} more than {INFO_LIMIT} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise UpstreamError(f"{where} something that is not JSON") from None


def parse_model_info(data: bytes, host: str, repo_id: str) -> DeclaredModelInfo:
    """Validate a model info body (its files are checked by :func:`declared_files`)."""
    where = f"{host} answered {repo_id}'s model info with"
    raw = _load(data, where)
    if not isinstance(raw, dict):
        raise UpstreamError(f"{where} a JSON {type(raw).__name__}, not an object")
    try:
        return DeclaredModelInfo.model_validate(raw)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        raise UpstreamError(
            f"{where} a malformed {_field(dict(error), raw)}: {error['msg']}"
        ) from None


class DeclaredRef(_Model):
    name: StrictStr
    targetCommit: Commit  # the Hub's field name


class DeclaredRefs(_Model):
    """``GET /api/models/{repo}/refs``: which names are branches and which are tags."""

    branches: Annotated[list[DeclaredRef], Field(max_length=MAX_FILES)]
    tags: Annotated[list[DeclaredRef], Field(max_length=MAX_FILES)]


def parse_refs(data: bytes, host: str, repo_id: str) -> DeclaredRefs:
    """Validate a refs body as strictly as the model info."""
    where = f"{host} answered {repo_id}'s refs with"
    try:
        return DeclaredRefs.model_validate(_load(data, where))
    except PydanticValidationError as exc:
        raise UpstreamError(f"{where} a malformed answer: {problem(exc)}") from None


class DeclaredTreeLfs(_Model):
    oid: Sha256
    size: Size
    pointerSize: Size | None = None  # the Hub's field name


class DeclaredTreeEntry(_Model):
    """One entry of ``GET /api/models/{repo}/tree/{rev}?recursive=true``."""

    type: StrictStr  # "file" or "directory"; only files are used
    path: StrictStr
    oid: GitOid
    size: Size
    lfs: DeclaredTreeLfs | None = None


TREE_PAGE = TypeAdapter(list[DeclaredTreeEntry])


def parse_tree_page(data: bytes, host: str, repo_id: str) -> list[DeclaredTreeEntry]:
    """Validate one page of a tree listing as strictly as the model info."""
    where = f"{host} answered {repo_id}'s tree with"
    raw = _load(data, where)
    if not isinstance(raw, list):
        raise UpstreamError(f"{where} a JSON {type(raw).__name__}, not a list")
    if len(raw) > 2 * MAX_FILES:
        raise UpstreamError(f"{where} more than {2 * MAX_FILES} entries")
    try:
        return TREE_PAGE.validate_python(raw)
    except PydanticValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc", ())
        text = location(loc)
        if loc and isinstance(loc[0], int) and isinstance(raw[loc[0]], dict):
            name = raw[loc[0]].get("path")
            if isinstance(name, str):
                text += f" ({name[:80]!r})"
        raise UpstreamError(f"{where} a malformed {text}: {error['msg']}") from None


def incomplete(info: DeclaredModelInfo) -> bool:
    """Some file lacks a size or a digest (Olah, a model info asked without ``blobs``)."""
    return any(s.lfs is None and (s.size is None or s.blobId is None) for s in info.siblings)


def declared_files(
    info: DeclaredModelInfo, host: str, tree: Sequence[DeclaredTreeEntry] = ()
) -> tuple[RemoteFile, ...]:
    """The files the model info declares, completed from ``tree`` where it says less.

    Where both say something they must agree: a tree that names another size or digest for a
    file than the model info is an upstream that cannot be verified against.
    """
    entries = {e.path: e for e in tree if e.type == "file"}
    files = tuple(
        _remote_file(_completed(s, entries.get(s.rfilename), host), host) for s in info.siblings
    )
    check_file_set(f.path for f in files)
    return files


def _completed(
    sibling: DeclaredSibling, entry: DeclaredTreeEntry | None, host: str
) -> DeclaredSibling:
    if entry is None:
        return sibling
    path = safe_relpath(sibling.rfilename)
    lfs = None
    if entry.lfs is not None:
        if entry.lfs.size != entry.size:
            raise UpstreamError(
                f"{host}'s tree declares {path} as {entry.size} bytes "
                f"but its LFS pointer as {entry.lfs.size}"
            )
        lfs = DeclaredLfs(
            sha256=entry.lfs.oid, size=entry.lfs.size, pointerSize=entry.lfs.pointerSize
        )
    disagreements = [
        what
        for what, ours, theirs in (
            ("size", sibling.size, entry.size),
            ("blobId", sibling.blobId, entry.oid),
            ("lfs.sha256", sibling.lfs and sibling.lfs.sha256, lfs and lfs.sha256),
            ("lfs.size", sibling.lfs and sibling.lfs.size, entry.size),
        )
        if ours is not None and ours != theirs
    ]
    if disagreements:
        raise UpstreamError(
            f"{host}'s tree disagrees with its model info about {path} ({', '.join(disagreements)})"
        )
    return DeclaredSibling(
        rfilename=sibling.rfilename,
        size=sibling.size if sibling.size is not None else entry.size,
        blobId=sibling.blobId or entry.oid,
        lfs=sibling.lfs or lfs,
    )


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
