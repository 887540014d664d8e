"""``hubd mirror``: resolve -> select -> plan -> fetch and verify -> link snapshot -> record.

The CLI runs :func:`mirror` in-process; the daemon will run the same function for its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from huggingface_hub.utils import filter_repo_objects
from sqlalchemy.orm import Session

from . import __version__
from .card import card_record
from .catalog.db import catalog_errors
from .catalog.queries import FileRecord, RevisionRecord, find_revision, record_revision
from .context import Context
from .errors import (
    AccessDenied,
    EntryNotFound,
    HubdError,
    IntegrityError,
    InvalidReference,
    NotFound,
    OfflineError,
    UpstreamError,
)
from .journal import Journal, recover
from .lineage import adapter_lineage
from .peers import sources
from .provenance import Hop, extend_chain
from .refs import RepoRef, is_commit
from .signatures import sign_files
from .sources.base import Attestations, NullProgress, Progress, RemoteFile, RemoteRevision
from .sources.huggingface import HfSource
from .space import check_mirror_space
from .store import Expected, Store
from .verify.admission import admit
from .verify.keys import node_key, signature_dir, write_atomic
from .verify.signing import SIGNATURE_FILE

# Always mirrored whatever --include says: the card (license, lineage), the adapter config and
# the repo's own OMS signature (checked before the revision becomes visible).
# The README kept as the model card; a longer one is cut (its front matter comes first).
CARD_TEXT_LIMIT = 1024 * 1024
METADATA_FILES = ("README.md", "adapter_config.json", SIGNATURE_FILE)


@dataclass
class MirrorResult:
    repo: str
    revision: str
    commit: str
    source: str
    files: int
    bytes_transferred: int
    bytes_reused: int
    seconds: float
    up_to_date: bool
    snapshot: str
    is_adapter: bool
    base_model: str | None
    base: MirrorResult | None = None
    review: str | None = None  # the policy let it through but asks a person to review it
    upstream_signature: dict[str, str] | None = None  # the repo's own model.sig, checked

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MirrorResult:
        """Back from to_json (a daemon's job result)."""
        base = data.get("base")
        return cls(**{**data, "base": cls.from_json(base) if base else None})


def select_files(
    files: Sequence[RemoteFile], include: Sequence[str], exclude: Sequence[str]
) -> list[RemoteFile]:
    """huggingface_hub's own allow/ignore pattern semantics, plus the metadata files."""
    chosen = list(
        filter_repo_objects(
            files,
            allow_patterns=list(include) or None,
            ignore_patterns=list(exclude) or None,
            key=lambda f: f.path,
        )
    )
    paths = {f.path for f in chosen}
    extra = [f for f in files if f.path in METADATA_FILES and f.path not in paths]
    if not any(f.path not in METADATA_FILES for f in chosen):
        raise EntryNotFound(
            "no file matches the --include/--exclude patterns",
            hint="files in the repo: " + ", ".join(f.path for f in files[:20]),
        )
    return sorted(chosen + extra, key=lambda f: f.path)


# A file that fails this way from one source may still come whole from another.
FILE_FAILURES = (UpstreamError, IntegrityError, EntryNotFound, AccessDenied)
log = logging.getLogger("hubd.mirror")


async def _resolve_first(
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


async def enter_in_thread(manager: AbstractContextManager[Any]) -> None:
    """Enter a context manager whose ``__enter__`` blocks (a file lock) without blocking the loop.

    The thread cannot be cancelled, so on cancellation wait for it and exit at once. Callers
    exit synchronously too: an exit queued on the executor could be cancelled and leak the lock.
    """
    entering = asyncio.ensure_future(asyncio.to_thread(manager.__enter__))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        await entering
        manager.__exit__(None, None, None)
        raise


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


@dataclass(frozen=True)
class Recorded:
    snapshot: Path
    is_adapter: bool
    base_model: str | None
    upstream_signature: dict[str, str] | None  # the verdict on a model.sig the repo ships


def record_snapshot(
    ctx: Context,
    ref: RepoRef,
    remote: RemoteRevision,
    files: Sequence[RemoteFile],
    digests: dict[str, str],
    *,
    source_url: str | None = None,
    served_by: dict[str, str] | None = None,
    carried: Attestations | None = None,
    started: datetime | None = None,
    session: Session | None = None,
) -> Recorded:
    """Admit, link and record a revision, then sign it and its provenance (blocking).

    Shared by mirror, `hubd add` and `hubd import`: ``digests`` maps every path to its verified
    blob. Inside one catalog transaction: the signatures the source carried (and a ``model.sig``
    the repo ships) are checked against the trust store and policy, the snapshot and refs are
    linked, the node key signs the whole revision (OMS) and appends its SLSA statement to the
    provenance chain. A refusal rolls the transaction back, and the journal (hubd.journal)
    removes the files written inside it, also after kill -9. The transaction is ``session``'s when
    given: an import records all its revisions in one, under its own journal.
    """
    store = ctx.store
    readme = digests.get("README.md")
    text = _card_text(store, readme) if readme else None
    card = card_record(text, remote.card_data, remote.gated)
    local = {path: store.blob_path(digest) for path, digest in digests.items()}
    is_adapter, base = adapter_lineage(local, card)
    refs = [] if ref.revision and is_commit(ref.revision) else [ref.revision or "main"]
    source_url = source_url or f"{remote.endpoint}/{remote.repo_id}"
    record = RevisionRecord(
        repo_id=remote.repo_id,
        commit=remote.commit,
        source_endpoint=remote.endpoint,
        refs=refs,
        files=[
            FileRecord(
                f.path,
                f.size,
                digests[f.path],
                f.git_oid,
                f.lfs,
                (served_by or {}).get(f.path, remote.endpoint),
            )
            for f in files
        ],
        card=card,
        is_adapter=is_adapter,
        base_model=base,
        node=ctx.settings.node_name,
        client=f"hubd/{__version__}",
        fetched_at=datetime.now(UTC),
        upstream=carried.hops if carried else (),
        source_url=source_url,
    )
    shipped = digests.get(SIGNATURE_FILE)
    key = node_key(ctx)
    if session is None:
        recover(store, ctx.catalog)  # a recording killed earlier may have left files behind
    # An import's own journal covers all its revisions; otherwise this recording keeps one.
    journal = Journal(store, ctx.catalog) if session is None else None
    with journal or nullcontext():
        if journal is not None:
            journal.remember(remote.repo_id, remote.commit, refs)
        with catalog_errors(), nullcontext(session) if session else ctx.catalog.begin() as db:
            revision = record_revision(db, record)
            everything = {f.path: f.sha256 for f in revision.files}
            model_sig = store.blob_path(shipped).read_bytes() if shipped else None
            admitted = admit(ctx, remote.repo_id, remote.commit, everything, carried, model_sig)
            snapshot = store.link_snapshot(remote.repo_id, remote.commit, digests.items())
            for name in refs:
                store.set_ref(remote.repo_id, name, remote.commit)
            for file_name, data in admitted.signatures.items():
                write_atomic(signature_dir(ctx, remote.repo_id, remote.commit) / file_name, data)
            sign_files(ctx, remote.repo_id, remote.commit, everything, key)
            hop = Hop(
                repo_id=remote.repo_id,
                commit=remote.commit,
                source_url=source_url,
                revision=ref.revision or "main",
                node=ctx.settings.node_name,
                started=started or record.fetched_at,
                finished=datetime.now(UTC),
                upstream_signature=admitted.upstream_signature,
            )
            extend_chain(ctx, key, hop, everything, carried.statements if carried else ())
    return Recorded(snapshot, is_adapter, base, admitted.upstream_signature)


def _card_text(store: Store, digest: str) -> str:
    """The start of the README: enough for the card's metadata, however large the file."""
    with os.fdopen(store.open_blob(digest), "rb") as readme:
        return readme.read(CARD_TEXT_LIMIT).decode("utf-8", "replace")


def _offline_answer(ctx: Context, ref: RepoRef, started: float) -> MirrorResult:
    with ctx.catalog() as session:
        revision = find_revision(session, ref.repo_id, ref.revision)
        if revision is None or revision.state != "verified":
            raise OfflineError(
                f"{ref} is not in the local catalog and offline mode is on (HF_HUB_OFFLINE=1)"
            )
        return MirrorResult(
            repo=ref.repo_id,
            revision=ref.revision or "main",
            commit=revision.commit,
            source=revision.source_endpoint,
            files=len(revision.files),
            bytes_transferred=0,
            bytes_reused=sum(f.size for f in revision.files),
            seconds=round(time.monotonic() - started, 3),
            up_to_date=True,
            snapshot=str(ctx.store.snapshot_dir(ref.repo_id, revision.commit)),
            is_adapter=revision.is_adapter,
            base_model=revision.base_model,
        )


async def mirror(
    ctx: Context,
    ref: RepoRef,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    with_base: bool = False,
    progress: Progress | None = None,
    from_: str | None = None,
) -> MirrorResult:
    """Mirror ``ref`` into the store and catalog; every byte verified before it is visible.

    Sources: ``from_`` (a peer name or URL) alone, else the peers in order, then the Hub. The
    first that resolves the revision serves it; a file that fails from it is fetched from the
    next source that declares the same commit and digest.
    """
    progress = progress or NullProgress()
    started = time.monotonic()
    if ctx.settings.offline:
        return _offline_answer(ctx, ref, started)
    candidates = await asyncio.to_thread(sources, ctx, from_)  # catalog and token files
    source, remote, fallbacks = await _resolve_first(candidates, ref)
    decision = None
    if ctx.settings.policy is not None:  # the audit stack is imported only when there is one
        from .audit.gate import check_mirror

        decision = await asyncio.to_thread(check_mirror, ctx, source, remote)  # before any byte
    files = select_files(remote.files, include, exclude)
    guard = ctx.store.guard(exclusive=False)
    await enter_in_thread(guard)
    try:
        result = await _transfer(ctx, source, fallbacks, ref, remote, files, progress, started)
    finally:
        guard.__exit__(None, None, None)
    if decision is not None and decision.action == "review":
        result.review = decision.message
    if with_base and result.base_model:
        try:
            base_ref = RepoRef.parse(result.base_model)
        except InvalidReference:
            raise InvalidReference(
                f"{ref.repo_id} is an adapter for {result.base_model!r}, "
                "which is not a repo id to mirror"
            ) from None
        result.base = await mirror(ctx, base_ref, progress=progress, from_=from_)
    return result


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

    async def one(item: RemoteFile) -> tuple[RemoteFile, str, int, str]:
        async with semaphore:
            failure: HubdError | None = None
            for src in candidates:
                if src is not source and not await alternatives.offers(src, item):
                    continue
                if failure is not None:
                    log.warning("%s: %s; trying %s", item.path, failure, src.endpoint)
                try:
                    digest, nbytes = await _fetch(ctx, src, session, remote, item, progress)
                    return item, digest, nbytes, src.endpoint
                except FILE_FAILURES as exc:
                    failure = exc
            assert failure is not None
            raise failure

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in todo.values()]
    except* Exception as failures:
        raise failures.exceptions[0] from None
    finally:
        progress.end()
    return [task.result() for task in tasks]


async def _transfer(
    ctx: Context,
    source: HfSource,
    fallbacks: list[HfSource],
    ref: RepoRef,
    remote: RemoteRevision,
    files: list[RemoteFile],
    progress: Progress,
    started: float,
) -> MirrorResult:
    """Plan, fetch and record one revision (under the store's shared guard)."""

    digests: dict[str, str] = {}
    todo: dict[str, RemoteFile] = {}
    for item in files:
        planned = _planned_blob(ctx, item)
        if planned is not None:
            digests[item.path] = planned
        else:
            todo.setdefault(_content_key(item), item)
    with ctx.catalog() as db:
        known = find_revision(db, remote.repo_id, remote.commit)
        verified = known is not None and known.state == "verified"
        known_paths = {f.path for f in known.files} if known and verified else set()
    up_to_date = not todo and {f.path for f in files} <= known_paths
    await asyncio.to_thread(check_mirror_space, ctx.store, remote.repo_id, todo.values())

    moved = 0
    served_by: dict[str, str] = {}
    async with source.session() as session:
        if todo:
            fetched = await _fetch_all(ctx, [source, *fallbacks], session, remote, todo, progress)
            by_key = {}
            for item, digest, nbytes, endpoint in fetched:
                by_key[_content_key(item)] = digest
                served_by[item.path] = endpoint
                moved += nbytes
            for item in files:
                if item.path not in digests:
                    digests[item.path] = by_key[_content_key(item)]
        carried = await source.attestations(session, remote.repo_id, remote.commit)
    recorded = await asyncio.to_thread(
        record_snapshot,
        ctx,
        ref,
        remote,
        files,
        digests,
        served_by=served_by,
        carried=carried,
        started=datetime.now(UTC) - timedelta(seconds=time.monotonic() - started),
    )
    return MirrorResult(
        repo=remote.repo_id,
        revision=ref.revision or "main",
        commit=remote.commit,
        source=remote.endpoint,
        files=len(files),
        bytes_transferred=moved,
        bytes_reused=sum(f.size for f in files) - moved,
        seconds=round(time.monotonic() - started, 3),
        up_to_date=up_to_date,
        snapshot=str(recorded.snapshot),
        is_adapter=recorded.is_adapter,
        base_model=recorded.base_model,
        upstream_signature=recorded.upstream_signature,
    )
