"""The pull-through a daemon with ``[proxy] enabled`` runs: the Hub API for what it lacks.

What the catalog holds verified is answered from it. Anything else is resolved upstream
(:mod:`.resolver`: ref TTL, policy before bytes) and answered in the Hub's shape from the
validated declaration; a file is streamed while it is fetched and verified (:mod:`.flight`).
Each verified file is added to the revision's ``pending`` row in the catalog; once every file
of the revision is in the store, the revision is recorded by ``ops.record`` as `hubd mirror`
records one (admission, snapshot, refs, node signature, SLSA provenance) and is verified from
then on. With ``HF_HUB_OFFLINE`` the daemon has no pull-through: the catalog answers alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from ..catalog.models import File, ModelCard, Revision, RevisionState
from ..catalog.revisions import (
    FileRecord,
    find_revision,
    record_pending_file,
    ref_names,
    repo_refs,
)
from ..context import Context
from ..errors import (
    AccessDenied,
    EntryNotFound,
    HubdError,
    NotFound,
    PolicyViolation,
    UpstreamError,
)
from ..model.card import card_record
from ..ops.record import record_snapshot
from ..ops.space import check_mirror_space
from ..refs import RepoRef, is_commit
from ..sources.base import RemoteFile
from .flight import Flight, Flights
from .resolver import Resolved, Resolver

log = logging.getLogger("hubd.proxy")
# Upstream failures after which a ref the catalog holds is answered from the catalog.
UNREACHABLE = (NotFound, UpstreamError, AccessDenied)


@dataclass(frozen=True)
class Pulled:
    """A file to serve: its commit and catalog-shaped entry; ``stored`` when its verified blob
    is in the store (``file.sha256`` is then that blob), else the bytes are still upstream."""

    commit: str
    file: File
    stored: bool
    resolved: Resolved | None  # None: a verified revision of the catalog


class PullThrough:
    """Resolver, flights and recording of one daemon's pull-through."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.resolver = Resolver(ctx)
        self.flights = Flights(ctx)
        self.recorded = 0
        self._settling: dict[tuple[str, str], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def revision(self, repo_id: str, rev: str | None) -> tuple[Revision, list[str]]:
        """(revision, its ref names) as :func:`hfapi.revision_of` answers, from upstream for
        what the catalog lacks; a transient :class:`Revision` (state ``pending``) then."""
        revision, names, _ = await self._revision(repo_id, rev)
        return revision, names

    async def _revision(
        self, repo_id: str, rev: str | None
    ) -> tuple[Revision, list[str], Resolved | None]:
        try:
            resolved = await self.resolver.resolve(repo_id, rev)
        except UNREACHABLE:
            held = await asyncio.to_thread(self._verified, repo_id, rev)
            if held is None:
                raise
            return (*held, None)
        held = await asyncio.to_thread(self._verified, repo_id, resolved.remote.commit)
        if held is not None:
            return (*held, None)
        await self.resolver.vet(resolved)
        name = rev or "main"
        return transient(resolved), [] if is_commit(name) else [name], resolved

    async def refs(self, repo_id: str) -> list[tuple[str, str]] | None:
        """None when the catalog holds refs of the repo (it answers); else the (name, commit)
        pairs resolved upstream within their TTL, main first resolved (and vetted) now."""
        if await asyncio.to_thread(self._has_refs, repo_id):
            return None
        resolved = await self.resolver.resolve(repo_id, None)
        await self.resolver.vet(resolved)
        refs = dict(self.resolver.fresh_refs(repo_id))
        refs.setdefault("main", resolved.remote.commit)  # with proxy.ref_ttl 0 none stay fresh
        return sorted(refs.items())

    def _has_refs(self, repo_id: str) -> bool:
        with self.ctx.catalog() as session:
            return bool(repo_refs(session, repo_id))

    def _verified(self, repo_id: str, rev: str | None) -> tuple[Revision, list[str]] | None:
        with self.ctx.catalog() as session:
            revision = find_revision(session, repo_id, rev)
            if revision is None or revision.state != RevisionState.VERIFIED:
                return None
            return revision, ref_names(session, revision)

    async def file(self, repo_id: str, rev: str, path: str) -> Pulled:
        """The file ``path`` of ``repo_id@rev``, or the Hub's not-found errors."""
        revision, _, resolved = await self._revision(repo_id, rev)
        match = next((f for f in revision.files if f.path == path), None)
        if match is None:
            raise EntryNotFound(f"{path} not found in {repo_id}@{revision.commit}")
        if resolved is None:
            return Pulled(revision.commit, match, True, None)
        digest = match.sha256 or self.ctx.store.known_git_blob(match.git_oid)
        stored = digest is not None and self.ctx.store.has_blob(digest, match.size)
        limit = self.ctx.settings.proxy_max_file_size
        if not stored and limit and match.size > limit:
            too_large = PolicyViolation(
                f"proxy.max_file_size: {repo_id}/{path} is {match.size} bytes, over the "
                f"pull-through's limit of {limit}",
                hint="`hubd mirror` it, or raise proxy.max_file_size",
            )
            raise await self.resolver.refused("size", too_large, repo_id, revision.commit)
        if stored and digest is not None:
            match.sha256 = digest
            self._spawn(self._settle(resolved, _remote_file(resolved, path), digest))
        return Pulled(revision.commit, match, stored, resolved)

    async def respond(
        self,
        request: web.Request,
        pulled: Pulled,
        span: tuple[int, int] | None,
        headers: dict[str, str],
        served: dict[str, int],
    ) -> web.StreamResponse:
        """HEAD: the headers; GET: the bytes, streamed from the (shared) upstream transfer."""
        item, resolved = pulled.file, pulled.resolved
        if request.method == "HEAD" or resolved is None:
            response = web.StreamResponse(headers=headers)
            response.content_type = "application/octet-stream"
            response.content_length = item.size
            return response
        flight = await self._flight(resolved, _remote_file(resolved, item.path))
        return await flight.respond(request, span, headers, served)

    async def _flight(self, resolved: Resolved, item: RemoteFile) -> Flight:
        remote = resolved.remote
        await asyncio.to_thread(check_mirror_space, self.ctx.store, remote.repo_id, [item])
        key = item.sha256 or f"git-{item.git_oid}"
        started = self.flights.started
        flight = self.flights.join(key, resolved.source, remote.repo_id, remote.commit, item)
        if self.flights.started != started and flight.task is not None:  # a new transfer

            def verified(task: asyncio.Task[str]) -> None:
                if not task.cancelled() and task.exception() is None:
                    self._spawn(self._settle(resolved, item, task.result()))

            flight.task.add_done_callback(verified)
        return flight

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle(self, resolved: Resolved, item: RemoteFile, digest: str) -> None:
        """Note a verified file in the pending revision; record the revision once it is whole."""
        remote = resolved.remote
        lock = self._settling.setdefault((remote.repo_id, remote.commit), asyncio.Lock())
        async with lock:
            try:
                digests = await asyncio.to_thread(self._note, resolved, item, digest)
                if digests is not None:
                    await self._record(resolved, digests)
                    self._settling.pop((remote.repo_id, remote.commit), None)
            except (HubdError, SQLAlchemyError) as exc:  # stays pending; a later request retries
                reason = exc.message if isinstance(exc, HubdError) else str(exc)
                log.error("pull-through: %s@%s: %s", remote.repo_id, remote.commit, reason)

    def _note(self, resolved: Resolved, item: RemoteFile, digest: str) -> dict[str, str] | None:
        """Add the file to the pending row (blocking); every path's blob if all are stored and
        the revision is not verified yet, else None."""
        remote, store = resolved.remote, self.ctx.store
        with self.ctx.catalog.begin() as session:
            held = find_revision(session, remote.repo_id, remote.commit)
            if held is not None and held.state == RevisionState.VERIFIED:
                return None
            record = FileRecord(
                item.path, item.size, digest, item.git_oid, item.lfs, resolved.source.endpoint
            )
            record_pending_file(session, remote.repo_id, remote.commit, remote.endpoint, record)
        digests = {}
        for f in remote.files:
            blob = f.sha256 or store.known_git_blob(f.git_oid)
            if blob is None or not store.has_blob(blob, f.size):
                return None
            digests[f.path] = blob
        return digests

    async def _record(self, resolved: Resolved, digests: dict[str, str]) -> None:
        remote, source = resolved.remote, resolved.source
        name = self.resolver.ref_name(remote.repo_id, remote.commit) or remote.commit
        async with source.session() as session:
            carried = await source.attestations(session, remote.repo_id, remote.commit)
        await asyncio.to_thread(
            record_snapshot,
            self.ctx,
            RepoRef.parse(f"{remote.repo_id}@{name}"),
            remote,
            remote.files,
            digests,
            carried=carried,
        )
        self.recorded += 1
        log.info("pull-through: recorded %s@%s", remote.repo_id, remote.commit)

    async def close(self) -> None:
        await self.flights.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _remote_file(resolved: Resolved, path: str) -> RemoteFile:
    return next(f for f in resolved.remote.files if f.path == path)


def transient(resolved: Resolved) -> Revision:
    """The revision as the source declares it, in the catalog's shape but in no session, so
    the Hub API's answers are built by the same code as for a verified one."""
    remote = resolved.remote
    card = card_record(None, remote.card_data, remote.gated)
    return Revision(
        commit=remote.commit,
        source_endpoint=remote.endpoint,
        state=RevisionState.PENDING,
        mirrored_at=datetime.now(UTC),
        is_adapter=False,
        base_model=card.base_model[0] if card.base_model else None,
        files=[
            File(path=f.path, size=f.size, sha256=f.sha256 or "", git_oid=f.git_oid, lfs=f.lfs)
            for f in remote.files
        ],
        card=ModelCard(**{f.name: getattr(card, f.name) for f in fields(card)}),
    )
