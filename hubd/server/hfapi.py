"""The Hugging Face Hub API, served from the catalog and the store.

The subset huggingface_hub uses to download (model info, tree, resolve) with the Hub's headers
and error contract, so unmodified clients and other hubd nodes pull from a hubd node as they
would from huggingface.co. Paths are parsed from the raw URL (a revision may hold an encoded
'/'), and every piece is validated before it touches the catalog or the disk. A file whose blob
only another node of a shared catalog holds is fetched from that node first
(hubd.cluster.locations).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any, BinaryIO
from urllib.parse import unquote, urlencode

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from sqlalchemy import select

from ..catalog.models import File, Revision, RevisionState
from ..catalog.revisions import commit_for, find_revision, ref_names, repo_exists, verified_file
from ..cluster.locations import BlobFetches
from ..context import Context
from ..errors import (
    EntryNotFound,
    InvalidRequest,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)
from ..hashes import lfs_pointer
from ..refs import RepoRef, check_revision, is_sha256, safe_relpath

CONTEXT = web.AppKey("ctx", Context)
SERVED = web.AppKey("served", dict[str, int])
FETCHES = web.AppKey("fetches", BlobFetches)
PAGE = 1000
MAX_QUERY = 2048
# One range, strictly as RFC 9110 spells it: no spaces, no lists, ASCII digits of sane length.
BYTE_RANGE = re.compile(r"bytes=(?:([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19}))")
log = logging.getLogger("hubd.server")


def _segments(request: web.Request, skip: int) -> list[str]:
    raw = request.raw_path.partition("?")[0]
    if len(request.query_string) > MAX_QUERY:
        raise InvalidRequest("query string too long")
    parts = [unquote(p) for p in raw.split("/")[1:]]
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts[: skip + 3]):
        raise InvalidRequest(f"malformed path {raw!r}")
    return parts[skip:]


def _repo(org: str, name: str) -> str:
    return RepoRef.parse(f"{org}/{name}").repo_id


def revision_of(ctx: Context, repo_id: str, rev: str | None) -> tuple[Revision, list[str]]:
    """(revision with files, its ref names), or the Hub's RepoNotFound / RevisionNotFound."""
    if rev is not None:
        check_revision(rev)
    with ctx.catalog() as session:
        revision = find_revision(session, repo_id, rev)
        if revision is None or revision.state != RevisionState.VERIFIED:
            if not repo_exists(session, repo_id):
                raise RepoNotFound(f"Repository {repo_id} not found")
            raise RevisionNotFound(f"Revision {rev!r} not found in {repo_id}")
        return revision, ref_names(session, revision)


def _file_of(ctx: Context, repo_id: str, rev: str, path: str) -> tuple[str, File]:
    """(commit, file) for a download in two small queries; the Hub's errors otherwise."""
    with ctx.catalog() as session:
        commit = commit_for(session, repo_id, rev)
        match = verified_file(session, repo_id, commit, path) if commit else None
        if match is not None and commit is not None:
            return commit, match
    revision_of(ctx, repo_id, rev)  # raises RepoNotFound / RevisionNotFound if that is why
    raise EntryNotFound(f"{path} not found in {repo_id}@{commit}")


def _sibling(f: File) -> dict[str, Any]:
    entry: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.git_oid}
    if f.lfs:
        entry["lfs"] = {
            "sha256": f.sha256,
            "size": f.size,
            "pointerSize": len(lfs_pointer(f.sha256, f.size)),
        }
    return entry


def model_info(revision: Revision, repo_id: str) -> dict[str, Any]:
    card = revision.card
    data = card.data if card else {}
    return {
        "_id": revision.commit[:24],
        "id": repo_id,
        "modelId": repo_id,
        "sha": revision.commit,
        "lastModified": revision.mirrored_at.isoformat().replace("+00:00", "Z"),
        "createdAt": revision.mirrored_at.isoformat().replace("+00:00", "Z"),
        "private": False,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": card.tags if card else [],
        "pipeline_tag": card.pipeline_tag if card else None,
        "library_name": data.get("library_name"),
        "cardData": data,
        "siblings": [_sibling(f) for f in revision.files],
    }


def _tree(revision: Revision, base: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{base}/" if base else ""
    entries: dict[str, dict[str, Any]] = {}
    for f in revision.files:
        if not f.path.startswith(prefix):
            continue
        rest = f.path[len(prefix) :]
        if "/" in rest and not recursive:
            directory = prefix + rest.split("/", 1)[0]
            entries.setdefault(
                directory, {"type": "directory", "oid": "", "size": 0, "path": directory}
            )
            continue
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            directory = prefix + "/".join(parts[:depth])
            entries.setdefault(
                directory, {"type": "directory", "oid": "", "size": 0, "path": directory}
            )
        entry: dict[str, Any] = {
            "type": "file",
            "oid": f.git_oid or "",
            "size": f.size,
            "path": f.path,
        }
        if f.lfs:
            entry["lfs"] = {
                "oid": f.sha256,
                "size": f.size,
                "pointerSize": len(lfs_pointer(f.sha256, f.size)),
            }
        entries[f.path] = entry
    if base and not entries:
        raise EntryNotFound(f"{base} not found in this revision")
    return [entries[k] for k in sorted(entries)]


async def api_models(request: web.Request) -> web.Response:
    """/api/models/{org}/{name}[/revision/{rev} | /tree/{rev}[/{path}]]"""
    ctx = request.app[CONTEXT]
    parts = _segments(request, 2)
    if len(parts) < 2:
        raise InvalidRequest("expected /api/models/{org}/{name}")
    repo_id = _repo(parts[0], parts[1])
    tail = parts[2:]
    if not tail or (tail[0] == "revision" and len(tail) == 2):
        revision, _ = await asyncio.to_thread(revision_of, ctx, repo_id, tail[1] if tail else None)
        return web.json_response(model_info(revision, repo_id))
    if tail[0] == "tree" and len(tail) >= 2:
        base = "/".join(tail[2:])
        if base:
            safe_relpath(base)
        revision, _ = await asyncio.to_thread(revision_of, ctx, repo_id, tail[1])
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        entries = _tree(revision, base, recursive)
        try:
            start = int(request.query.get("cursor", "0"))
        except ValueError:
            raise InvalidRequest("bad cursor") from None
        if start < 0:
            raise InvalidRequest("bad cursor")
        page = entries[start : start + PAGE]
        response = web.json_response(page)
        if start + PAGE < len(entries):
            query = {**request.query, "cursor": str(start + PAGE)}
            url = request.url.with_query(None)
            response.headers["Link"] = f'<{url}?{urlencode(query)}>; rel="next"'
        return response
    raise EntryNotFound("no such API route")


async def resolve(request: web.Request) -> web.StreamResponse:
    """HEAD/GET /{org}/{name}/resolve/{rev}/{path}: the bytes, with the Hub's headers."""
    ctx = request.app[CONTEXT]
    parts = _segments(request, 0)
    if len(parts) < 5 or parts[2] != "resolve":
        raise EntryNotFound("no such route")
    repo_id = _repo(parts[0], parts[1])
    path = safe_relpath("/".join(parts[4:]))
    commit, match = await asyncio.to_thread(_file_of, ctx, repo_id, check_revision(parts[3]), path)
    if not ctx.store.has_blob(match.sha256, match.size):  # another node of the catalog has it
        await request.app[FETCHES].ensure(match.sha256, match.size, f"{repo_id}/{path}")
    etag = f'"{match.sha256 if match.lfs else match.git_oid or match.sha256}"'
    headers = {
        "X-Repo-Commit": commit,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(match.size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
    }
    return await _send_blob(request, match.sha256, match.size, headers)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, count) a Range header asks of a ``size``-byte blob; None for the whole blob."""
    if header is None:
        return None
    match = BYTE_RANGE.fullmatch(header)
    if match is None:
        raise RangeNotSatisfiable(
            f"unsupported Range {header[:100]!r}: expected bytes=N-[M] or bytes=-N", size
        )
    first, last, suffix = match.groups()
    if suffix is not None:
        start, stop = max(0, size - int(suffix)), size
    else:
        start, stop = int(first), size if not last else min(int(last) + 1, size)
        if last and int(last) < start:
            raise RangeNotSatisfiable(f"Range {header!r} ends before it starts", size)
    if start >= stop:
        raise RangeNotSatisfiable(f"Range {header!r} selects none of the {size} bytes", size)
    return start, stop - start


def open_blob(ctx: Context, sha256: str, size: int) -> BinaryIO:
    """The stored blob as a regular file of ``size`` bytes, opened without following symlinks.

    What a traversal left at a blob path (a symlink to the node key, a FIFO, a directory) is
    refused as missing, never served; ``hubd verify --repair`` is the way to mend it.
    """
    try:
        fd = ctx.store.open_blob(sha256)
    except FileNotFoundError:
        raise EntryNotFound(f"blob {sha256} is not in this node's store") from None
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR, EINVAL: something else where it goes
        log.warning("refusing to serve blob %s: %s", sha256, exc.strerror)
        raise EntryNotFound(f"blob {sha256} is not in this node's store") from None
    if os.fstat(fd).st_size != size:
        os.close(fd)
        log.warning("refusing to serve blob %s: not of its %d bytes", sha256, size)
        raise EntryNotFound(f"blob {sha256} is not in this node's store")
    return os.fdopen(fd, "rb")


class BlobResponse(web.StreamResponse):
    """An open blob, whole or one range, through sendfile; closed once sent.

    Unlike FileResponse it never reopens a path (the checks :func:`open_blob` made hold for
    what is sent) and never looks for a compressed sibling of it. What a GET sent is counted
    in hubd_bytes_served_total.
    """

    def __init__(
        self,
        blob: BinaryIO,
        size: int,
        span: tuple[int, int] | None,
        headers: dict[str, str],
        served: dict[str, int],
    ) -> None:
        super().__init__(status=200 if span is None else 206, headers=headers)
        self._blob = blob
        self._served = served
        self._offset, self._count = span or (0, size)
        if span is not None:
            last = self._offset + self._count - 1
            self.headers["Content-Range"] = f"bytes {self._offset}-{last}/{size}"
        self.content_type = "application/octet-stream"
        self.content_length = self._count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0:
                return writer
            if request.transport is None:
                raise ConnectionResetError("connection lost")
            loop = asyncio.get_running_loop()
            await loop.sendfile(request.transport, self._blob, self._offset, self._count)
            self._served["bytes"] += self._count
            await super().write_eof()
            return writer
        finally:
            self._blob.close()


async def _send_blob(
    request: web.Request, sha256: str, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """A stored blob (Range included) after the Range and the file itself are checked."""
    span = byte_range(request.headers.get("Range"), size)
    blob = await asyncio.to_thread(open_blob, request.app[CONTEXT], sha256, size)
    return BlobResponse(blob, size, span, headers, request.app[SERVED])


def _catalog_size(ctx: Context, sha256: str) -> int | None:
    """The size the catalog records for a blob of a verified revision; None if it knows none."""
    with ctx.catalog() as session:
        return session.scalar(
            select(File.size)
            .join(Revision)
            .where(File.sha256 == sha256, Revision.state == RevisionState.VERIFIED)
            .limit(1)
        )


async def blob(request: web.Request) -> web.StreamResponse:
    """HEAD/GET /api/hubd/blobs/{sha256}: a blob of this node's store, for a node that lacks it.

    Only blobs the catalog records for a verified revision, of the size it records: whatever
    else sits under blobs/ (a failed mirror's leftovers) is not this node's to hand out. Only
    what this store holds: a node never asks a third one on another's behalf, so two nodes
    that both lack a blob cannot send each other round in circles.
    """
    sha256 = request.match_info["sha256"]
    if not is_sha256(sha256):
        raise InvalidRequest("expected /api/hubd/blobs/{sha256} with 64 lowercase hex digits")
    size = await asyncio.to_thread(_catalog_size, request.app[CONTEXT], sha256)
    if size is None:
        raise EntryNotFound(f"blob {sha256} is not in this node's store")
    headers = {"ETag": f'"{sha256}"', "X-Linked-Size": str(size), "Accept-Ranges": "bytes"}
    return await _send_blob(request, sha256, size, headers)
