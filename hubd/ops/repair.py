"""``hubd verify --repair``: set damaged blobs aside and fetch them again (hubd.ops.fetch).

A damaged blob is first moved to ``quarantine/<sha256>.<actual sha256>`` in the store, so no
corrupt bytes stay where a verified blob is expected, yet nothing is lost if the repair fails.
Then the damaged files of a revision that holds it are fetched again at its commit from the
peers then the Hub, with per-file fallback, every byte verified before the blob reappears. The
revision is recorded already, so nothing is recorded again. The quarantined copy is deleted
once the blob is back, and kept otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..context import Context
from ..errors import HubdError, StoreError
from ..refs import RepoRef
from ..sources.base import NullProgress
from ..sources.registry import sources
from ..threads import enter_in_thread
from .fetch import fetch, resolve_first
from .verify import BlobRepair, Damage

QUARANTINE = "quarantine"


def quarantine_dir(ctx: Context) -> Path:
    return ctx.store.root / QUARANTINE


@dataclass
class _Blob:
    """One damaged blob: where it is referenced, and what each attempt to repair it said."""

    sha256: str
    actual: str | None
    where: list[Damage]
    quarantine: Path | None = None
    reasons: list[str] = field(default_factory=list)


def _set_aside(ctx: Context, blobs: Sequence[_Blob]) -> None:
    """Move each damaged blob into quarantine (under the exclusive guard, as gc deletes)."""
    directory = quarantine_dir(ctx)
    with ctx.store.guard(exclusive=True):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for blob in blobs:
                if blob.actual is None:
                    continue  # missing: nothing to keep
                target = directory / f"{blob.sha256}.{blob.actual}"
                if not ctx.store.quarantine(blob.sha256, target):
                    continue  # gone since it was hashed
                blob.quarantine = target
        except OSError as exc:
            raise StoreError(
                f"cannot move damaged blobs to {directory}: {exc.strerror or exc}"
            ) from None


async def _fetch_paths(ctx: Context, ref: RepoRef, paths: Collection[str]) -> str:
    """Fetch ``paths`` of pinned ``ref`` from the first source that resolves it; its endpoint."""
    candidates = await asyncio.to_thread(sources, ctx, None)  # catalog and token files
    source, remote, fallbacks = await resolve_first(candidates, ref)
    files = [f for f in remote.files if f.path in paths]
    guard = ctx.store.guard(exclusive=False)  # gc must not delete a blob as it reappears
    await enter_in_thread(guard)
    try:
        async with source.session() as session:
            await fetch(ctx, [source, *fallbacks], session, remote, files, NullProgress())
    finally:
        guard.__exit__(None, None, None)
    return remote.endpoint


async def _fetch_again(ctx: Context, repo: str, commit: str, blobs: dict[str, _Blob]) -> str | None:
    """Fetch the paths of ``blobs`` from ``repo@commit``; the source, or None on failure.

    ``blobs`` maps path -> blob. A failure is recorded as a reason on every blob it concerns.
    """
    where = f"{repo}@{commit[:12]}"
    if ctx.settings.offline:
        reason = f"{where}: offline mode is on (HF_HUB_OFFLINE=1), no source to fetch from"
    else:
        try:
            return await _fetch_paths(ctx, RepoRef.parse(f"{repo}@{commit}"), blobs.keys())
        except HubdError as exc:
            reason = f"{where}: {exc.message}"
    for blob in blobs.values():
        blob.reasons.append(reason)
    return None


async def repair(ctx: Context, damaged: Sequence[Damage]) -> list[BlobRepair]:
    """Repair every damaged blob, trying each revision that holds it until one brings it back.

    Revisions are fetched from one after another: each damaged revision once per round, with
    all its damaged paths.
    """
    blobs: dict[str, _Blob] = {}
    for d in damaged:
        blobs.setdefault(d.expected, _Blob(d.expected, d.actual, [])).where.append(d)
    await asyncio.to_thread(_set_aside, ctx, list(blobs.values()))
    outcome: dict[str, BlobRepair] = {}
    candidates = {sha: _revisions(blob.where) for sha, blob in blobs.items()}
    while any(candidates.values()):
        rounds: dict[tuple[str, str], dict[str, _Blob]] = {}
        for sha, todo in candidates.items():
            if todo:
                repo, commit, path = todo.pop(0)
                rounds.setdefault((repo, commit), {})[path] = blobs[sha]
        for (repo, commit), wanted in rounds.items():
            source = await _fetch_again(ctx, repo, commit, wanted)
            for blob in wanted.values():
                if ctx.store.has_blob(blob.sha256):  # only ever published once verified
                    outcome[blob.sha256] = await asyncio.to_thread(_repaired, ctx, blob, source)
                    candidates[blob.sha256] = []
                elif source is not None:
                    blob.reasons.append(f"{repo}@{commit[:12]}: the mirror did not bring it back")
    return [outcome.get(sha) or _still_damaged(ctx, blob) for sha, blob in blobs.items()]


def _revisions(where: list[Damage]) -> list[tuple[str, str, str]]:
    """(repo, commit, path) of each distinct revision holding the blob, in catalog order."""
    seen: dict[tuple[str, str], str] = {}
    for d in where:
        seen.setdefault((d.repo, d.commit), d.path)
    return [(repo, commit, path) for (repo, commit), path in seen.items()]


def _repaired(ctx: Context, blob: _Blob, source: str | None) -> BlobRepair:
    """The blob is back and verified: its damaged copies (this run's or older) have no use."""
    for copy in quarantine_dir(ctx).glob(f"{blob.sha256}.*"):
        copy.unlink(missing_ok=True)
    return BlobRepair(
        sha256=blob.sha256, repaired=True, source=source, quarantine=None, reason=None
    )


def _still_damaged(ctx: Context, blob: _Blob) -> BlobRepair:
    where = blob.quarantine or next(iter(quarantine_dir(ctx).glob(f"{blob.sha256}.*")), None)
    return BlobRepair(
        sha256=blob.sha256,
        repaired=False,
        source=None,
        quarantine=str(where) if where else None,
        reason="; ".join(blob.reasons) or "no revision to fetch it from",
    )
