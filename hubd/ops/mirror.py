"""``hubd mirror``: resolve -> policy -> select -> fetch (ops.fetch) -> record (ops.record).

The CLI runs :func:`mirror` in-process; the daemon will run the same function for its jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from huggingface_hub.utils import filter_repo_objects
from pydantic import BaseModel, ConfigDict, Field

from ..catalog.models import File, Revision, RevisionState
from ..catalog.revisions import find_ref, find_revision
from ..context import Context
from ..errors import EntryNotFound, InvalidReference, OfflineError, RepoNotFound
from ..refs import RepoRef, is_commit
from ..sources.base import NullProgress, Progress, RemoteFile, RemoteRevision
from ..sources.huggingface import HfSource
from ..sources.registry import sources
from ..threads import enter_in_thread
from ..trust.shipped import SIGNATURE_FILE, UpstreamSignature
from ..validation import Commit, Size
from .fetch import fetch, resolve_first
from .requests import MirrorRequest

# Always mirrored whatever --include says: the card (license, lineage), the adapter config and
# the repo's own OMS signature (checked before the revision becomes visible).
METADATA_FILES = ("README.md", "adapter_config.json", SIGNATURE_FILE)


class MirrorResult(BaseModel):
    """Summary of one `hubd mirror` run; `base` holds the base model's summary when --with-base
    mirrored one."""

    model_config = ConfigDict(extra="forbid", title="hubd mirror --json")

    repo: Annotated[str, Field(pattern=r"^[^/]+/[^/]+$")]
    revision: str = Field(description="what was asked for: branch, tag or commit")
    commit: Commit
    source: str = Field(json_schema_extra={"format": "uri"})
    files: Size
    bytes_transferred: Size = Field(description="bytes moved over the network in this run")
    bytes_reused: Size = Field(
        description="bytes already in the store (other repos, revisions, or an interrupted run)"
    )
    seconds: Annotated[float, Field(ge=0)]
    up_to_date: bool = Field(
        description="the revision was already complete: nothing was fetched or changed"
    )
    snapshot: str = Field(
        description="directory with the repo's file names linked to verified blobs"
    )
    is_adapter: bool
    base_model: str | None
    base: MirrorResult | None
    review: str | None = Field(
        description="set when the policy (audit.policy) let the mirror proceed but flags the repo "
        "for review: the decision, naming the rule"
    )
    upstream_signature: UpstreamSignature | None = Field(
        description="the verdict on a model.sig (OMS) the repo itself ships: verified by a "
        "trusted signer, or by a key outside the trust store (kept; trusting it later makes it "
        "count). A model.sig that does not match the files fails the mirror."
    )


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


def _offline_answer(ctx: Context, ref: RepoRef, started: float) -> MirrorResult:
    with ctx.catalog() as session:
        revision = find_revision(session, ref.repo_id, ref.revision)
        if revision is None or revision.state != RevisionState.VERIFIED:
            raise OfflineError(
                f"{ref} is not in the local catalog and offline mode is on (HF_HUB_OFFLINE=1)"
            )
        return _held_answer(ctx, ref, revision, revision.source_endpoint, revision.files, started)


def _held_answer(
    ctx: Context,
    ref: RepoRef,
    revision: Revision,
    source: str,
    files: Sequence[File | RemoteFile],
    started: float,
) -> MirrorResult:
    """The summary of a run that found ``revision`` held: nothing moved, nothing re-checked."""
    return MirrorResult(
        repo=ref.repo_id,
        revision=ref.revision or "main",
        commit=revision.commit,
        source=source,
        files=len(files),
        bytes_transferred=0,
        bytes_reused=sum(f.size for f in files),
        seconds=round(time.monotonic() - started, 3),
        up_to_date=True,
        snapshot=str(ctx.store.snapshot_dir(ref.repo_id, revision.commit)),
        is_adapter=revision.is_adapter,
        base_model=revision.base_model,
        base=None,
        review=None,
        upstream_signature=None,
    )


async def mirror_requested(
    ctx: Context, request: MirrorRequest, progress: Progress | None = None
) -> MirrorResult:
    """:func:`mirror` as a :class:`MirrorRequest` asks (the CLI's flags, a job)."""
    return await mirror(
        ctx,
        request.ref,
        include=request.include,
        exclude=request.exclude,
        with_base=request.with_base,
        progress=progress,
        from_=request.from_,
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
    try:
        source, remote, fallbacks = await resolve_first(candidates, ref)
    except RepoNotFound as exc:
        await _did_you_mean(exc, candidates[-1], ref)
        raise
    decision = None
    if ctx.settings.policy is not None:  # the audit stack is imported only when there is one
        from ..audit.gate import check_mirror

        decision = await asyncio.to_thread(check_mirror, ctx, source, remote)  # before any byte
    files = select_files(remote.files, include, exclude)
    result = await asyncio.to_thread(_held, ctx, ref, remote, files, started)
    if result is None:
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


def _held(
    ctx: Context, ref: RepoRef, remote: RemoteRevision, files: list[RemoteFile], started: float
) -> MirrorResult | None:
    """The answer for a revision this node already holds as the source declares it, or None.

    Held means: verified in the catalog with every selected file of the same size and digest,
    every blob in this node's store, and the ref (unless a commit was asked for) already at
    the commit, in the catalog and the store. Then nothing is fetched, signed or recorded
    again, and the byte-transfer and signing stacks are never imported (the start-up of a
    routine re-run). Anything less takes the whole path, which also re-links the snapshot. So
    does a revision that ships its own model.sig: the verdict on it depends on the trust store,
    which may have changed since, and is reported afresh.
    """
    if any(f.path == SIGNATURE_FILE for f in files):
        return None
    name = None if ref.revision and is_commit(ref.revision) else ref.revision or "main"
    with ctx.catalog() as session:
        known = find_revision(session, remote.repo_id, remote.commit)
        if known is None or known.state != RevisionState.VERIFIED:
            return None
        if name is not None:
            recorded = find_ref(session, remote.repo_id, name)
            if recorded is None or recorded.commit != remote.commit:
                return None
            if ctx.store.get_ref(remote.repo_id, name) != remote.commit:
                return None
        held = {f.path: f for f in known.files}
        for item in files:
            mine = held.get(item.path)
            if mine is None or not _same_content(item, mine):
                return None
            if not ctx.store.has_blob(mine.sha256, mine.size):
                return None
        return _held_answer(ctx, ref, known, remote.endpoint, files, started)


def _same_content(declared: RemoteFile, held: File) -> bool:
    """The source declares the file as held: same size, and no digest either side disagrees on."""
    if declared.size != held.size or declared.sha256 not in (None, held.sha256):
        return False
    return declared.git_oid is None or held.git_oid in (None, declared.git_oid)


async def _did_you_mean(exc: RepoNotFound, source: HfSource, ref: RepoRef) -> None:
    """Put close names the endpoint knows into the hint (its search; nothing if that fails)."""
    names = await asyncio.to_thread(source.similar, ref.repo_id)
    if names:
        exc.hint = "; ".join(filter(None, [f"did you mean {', '.join(names)}?", exc.hint]))


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
    """Fetch and record one revision (under the store's shared guard)."""
    with ctx.catalog() as db:
        known = find_revision(db, remote.repo_id, remote.commit)
        verified = known is not None and known.state == RevisionState.VERIFIED
        known_paths = {f.path for f in known.files} if known and verified else set()
    async with source.session() as session:
        fetched = await fetch(ctx, [source, *fallbacks], session, remote, files, progress)
        carried = await source.attestations(session, remote.repo_id, remote.commit)
    up_to_date = not fetched.transferred and {f.path for f in files} <= known_paths
    from .record import record_snapshot  # the signing stack: only a revision not held needs it

    recorded = await asyncio.to_thread(
        record_snapshot,
        ctx,
        ref,
        remote,
        files,
        fetched.digests,
        served_by=fetched.served_by,
        carried=carried,
        started=datetime.now(UTC) - timedelta(seconds=time.monotonic() - started),
    )
    return MirrorResult(
        repo=remote.repo_id,
        revision=ref.revision or "main",
        commit=remote.commit,
        source=remote.endpoint,
        files=len(files),
        bytes_transferred=fetched.moved,
        bytes_reused=sum(f.size for f in files) - fetched.moved,
        seconds=round(time.monotonic() - started, 3),
        up_to_date=up_to_date,
        snapshot=str(recorded.snapshot),
        is_adapter=recorded.is_adapter,
        base_model=recorded.base_model,
        base=None,
        review=None,
        upstream_signature=UpstreamSignature.model_validate(recorded.upstream_signature)
        if recorded.upstream_signature
        else None,
    )
