"""Plan and transfer a given file list of one revision into the store, every byte verified.

The lower stage mirror and repair share: it decides which blobs are missing, fetches each once
from the first source, falls back per file to the others, and records nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..context import Context
from ..errors import AccessDenied, EntryNotFound, HubdError, IntegrityError, NotFound, UpstreamError
from ..refs import RepoRef
from ..sources.base import Progress, RemoteFile, RemoteRevision
from ..sources.huggingface import HfSource
from ..store import Expected
from ..threads import enter_in_thread
from .space import check_mirror_space

if TYPE_CHECKING:
    import aiohttp

# A file that fails this way from one source may still come whole from another.
FILE_FAILURES = (UpstreamError, IntegrityError, EntryNotFound, AccessDenied)
log = logging.getLogger("hubd.ops.fetch")


@dataclass(frozen=True)
class Fetched:
    digests: dict[str, str]  # every path of the file list -> its verified blob
    transferred: int  # files that were not stored yet (0: nothing to fetch)
    moved: int  # bytes over the network
    served_by: dict[str, str]  # path -> endpoint, for the files transferred


async def resolve_first(
    candidates: list[HfSource], ref: RepoRef
) -> tuple[HfSource, RemoteRevision, list[HfSource]]:
    """The first source that resolves ``ref``, its answer, and the sources after it."""
    errors: list[HubdError] = []
    for index, source in enumerate(candidates):
        try:
            remote = await asyncio.to_thread(source.resolve, ref)
        except (NotFound, UpstreamError, AccessDenied) as exc:
            errors.append(exc)
            continue
        return source, remote, candidates[index + 1 :]
    denied = [e for e in errors if isinstance(e, AccessDenied)]
    raise (denied or errors)[-1]


class _Alternatives:
    """Which fallback sources hold the same commit with the same file (resolved lazily, once)."""

    def __init__(self, remote: RemoteRevision) -> None:
        self.remote = remote
        self._answers: dict[str, asyncio.Task[dict[str, RemoteFile]]] = {}

    async def offers(self, source: HfSource, item: RemoteFile) -> bool:
        if source.endpoint not in self._answers:
            self._answers[source.endpoint] = asyncio.ensure_future(self._files(source))
        theirs = (await self._answers[source.endpoint]).get(item.path)
        return theirs is not None and (theirs.size, theirs.sha256, theirs.git_oid) == (
            item.size,
            item.sha256,
            item.git_oid,
        )

    async def _files(self, source: HfSource) -> dict[str, RemoteFile]:
        pinned = RepoRef.parse(f"{self.remote.repo_id}@{self.remote.commit}")
        try:
            answer = await asyncio.to_thread(source.resolve, pinned)
        except HubdError:
            return {}
        return {f.path: f for f in answer.files}


async def fetch(
    ctx: Context,
    candidates: Sequence[HfSource],
    session: aiohttp.ClientSession,
    remote: RemoteRevision,
    files: Sequence[RemoteFile],
    progress: Progress,
) -> Fetched:
    """Store every blob of ``files`` (of ``remote``) that is missing; the caller holds the guard.

    ``candidates[0]`` serves; a file that fails from it comes from the next candidate that
    declares the same commit with the same digest. ``session`` is the caller's (one per
    transfer, the attestations asked over it too).
    """
    digests: dict[str, str] = {}
    todo: dict[str, RemoteFile] = {}
    for item in files:
        planned = _planned_blob(ctx, item)
        if planned is not None:
            digests[item.path] = planned
        else:
            todo.setdefault(_content_key(item), item)
    await asyncio.to_thread(check_mirror_space, ctx.store, remote.repo_id, todo.values())
    if not todo:
        return Fetched(digests, 0, 0, {})
    moved = 0
    served_by: dict[str, str] = {}
    fetched = await _fetch_all(ctx, list(candidates), session, remote, todo, progress)
    by_key = {}
    for item, digest, nbytes, endpoint in fetched:
        by_key[_content_key(item)] = digest
        served_by[item.path] = endpoint
        moved += nbytes
    for item in files:
        if item.path not in digests:
            digests[item.path] = by_key[_content_key(item)]
    return Fetched(digests, len(todo), moved, served_by)


async def _fetch_all(
    ctx: Context,
    candidates: list[HfSource],
    session: aiohttp.ClientSession,
    remote: RemoteRevision,
    todo: dict[str, RemoteFile],
    progress: Progress,
) -> list[tuple[RemoteFile, str, int, str]]:
    """Fetch every file in parallel: (file, sha256, bytes moved, endpoint that served it).

    A file that fails from the first source is fetched from the next one that declares the
    same commit with the same digest.
    """
    source, *fallbacks = candidates
    progress.begin(len(todo), sum(f.size for f in todo.values()))
    semaphore = asyncio.Semaphore(ctx.settings.concurrency)
    alternatives = _Alternatives(remote)

    async def attempt(src: HfSource, item: RemoteFile) -> tuple[RemoteFile, str, int, str]:
        digest, nbytes = await _fetch(ctx, src, session, remote, item, progress)
        return item, digest, nbytes, src.endpoint

    async def one(item: RemoteFile) -> tuple[RemoteFile, str, int, str]:
        async with semaphore:
            try:
                return await attempt(source, item)
            except FILE_FAILURES as exc:
                failure: HubdError = exc
            for src in fallbacks:
                if not await alternatives.offers(src, item):
                    continue
                log.warning("%s: %s; trying %s", item.path, failure, src.endpoint)
                try:
                    return await attempt(src, item)
                except FILE_FAILURES as exc:
                    failure = exc
            raise failure

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in todo.values()]
    except* Exception as failures:
        raise failures.exceptions[0] from None
    finally:
        progress.end()
    return [task.result() for task in tasks]


async def _fetch(
    ctx: Context,
    source: HfSource,
    session: aiohttp.ClientSession,
    remote: RemoteRevision,
    item: RemoteFile,
    progress: Progress,
) -> tuple[str, int]:
    """Fetch one file into the store; returns (sha256, bytes moved over the network)."""
    writer = ctx.store.writer(
        Expected(f"{remote.repo_id}/{item.path}", item.size, item.sha256, item.git_oid)
    )
    await enter_in_thread(writer)
    try:
        if writer.present is not None:
            return writer.present, 0
        start = writer.offset
        progress.file_started(item.path, item.size, start)
        url = source.file_url(remote.repo_id, remote.commit, item.path)
        try:
            await source.download(
                session, item, url, writer, lambda n: progress.advance(item.path, n)
            )
            digest = await asyncio.to_thread(writer.commit)
        except IntegrityError:
            writer.discard()
            raise
        progress.file_done(item.path)
        return digest, item.size - start
    finally:
        writer.__exit__(None, None, None)


def _content_key(item: RemoteFile) -> str:
    """Files with the same content are fetched once: by sha256, else by git blob id."""
    return item.sha256 or f"git-{item.git_oid}"


def _planned_blob(ctx: Context, item: RemoteFile) -> str | None:
    digest = item.sha256 or ctx.store.known_git_blob(item.git_oid)
    return digest if digest and ctx.store.has_blob(digest, item.size) else None
