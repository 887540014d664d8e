"""``hubd verify``: re-hash stored blobs in parallel and name every damaged file.

``--repair`` (hubd.ops.repair) then fetches each damaged blob again and records the outcome
here, one :class:`BlobRepair` per distinct blob.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..catalog.nodes import held_only_elsewhere
from ..catalog.revisions import revisions_with_files
from ..context import Context


@dataclass(frozen=True)
class Damage:
    repo: str
    commit: str
    path: str
    expected: str
    actual: str | None  # None: the blob is missing


@dataclass(frozen=True)
class MisLinked:
    """A snapshot file that does not lead to the blob the catalog names for it."""

    repo: str
    commit: str
    path: str
    expected: str  # the catalog's sha256
    actual: str | None  # where the link points instead; None: no link


@dataclass(frozen=True)
class BlobRepair:
    """What ``--repair`` did for one damaged blob (every file that shares it)."""

    sha256: str
    repaired: bool
    source: str | None = None  # the endpoint the revision was fetched again from
    quarantine: str | None = None  # the damaged copy, kept while the blob is not repaired
    reason: str | None = None  # why it is still damaged


@dataclass
class VerifyReport:
    revisions: int = 0
    files: int = 0
    blobs: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)  # as found, before any repair
    mislinked: list[MisLinked] = field(default_factory=list)
    elsewhere: int = 0  # blobs only other nodes of a shared catalog hold: theirs to verify
    repairs: list[BlobRepair] | None = None  # None: no repair was asked for

    @property
    def unrepaired(self) -> list[Damage]:
        fixed = {r.sha256 for r in self.repairs or () if r.repaired}
        return [d for d in self.damaged if d.expected not in fixed]

    @property
    def ok(self) -> bool:
        return not self.unrepaired and not self.mislinked

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "revisions": self.revisions,
            "files": self.files,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "damaged": [d.__dict__ for d in self.damaged],
            "mislinked": [m.__dict__ for m in self.mislinked],
            "elsewhere": self.elsewhere,
        }
        if self.repairs is not None:
            data["repairs"] = [r.__dict__ for r in self.repairs]
        return data


def _digest_or_none(ctx: Context, sha256: str) -> str | None:
    """The blob's sha256 as read now; None if it is missing or not a regular file."""
    try:
        fd = ctx.store.open_blob(sha256)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as blob:  # hashlib releases the GIL: threads hash on every core
        return hashlib.file_digest(blob, "sha256").hexdigest()


def _mislinked(ctx: Context, rows: list[tuple[str, str, str, str, int]]) -> list[MisLinked]:
    """Snapshot links that do not point at the catalog's blob (a swapped or missing link).

    A node of a shared catalog that never linked a revision has no snapshot for it: skipped.
    """
    found = []
    for repo, commit, path, sha, _ in rows:
        snapshot = ctx.store.snapshot_dir(repo, commit)
        if not snapshot.is_dir():
            continue
        link = snapshot / path
        expected = os.path.normpath(ctx.store.blob_path(sha))
        try:
            target = os.path.normpath(os.path.join(link.parent, os.readlink(link)))
        except OSError:
            found.append(MisLinked(repo, commit, path, sha, None))
            continue
        if target != expected:
            found.append(MisLinked(repo, commit, path, sha, target))
    return found


def relink(ctx: Context, mislinked: list[MisLinked]) -> None:
    """Point each mislinked file at its catalog blob again (``hubd verify --repair``)."""
    for m in mislinked:
        ctx.store.link_snapshot(m.repo, m.commit, [(m.path, m.expected)])


def verify_store(
    ctx: Context,
    repo_id: str | None = None,
    on_blob: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Hash each distinct blob once, on ``verify.workers`` threads (hashlib drops the GIL).

    On a catalog shared by several nodes, blobs that only other nodes' stores hold are theirs
    to verify: they are counted in ``elsewhere``, not reported missing.
    """
    with ctx.catalog() as session:
        revisions = revisions_with_files(session, repo_id)
        rows = [
            (r.repo.repo_id, r.commit, f.path, f.sha256, f.size) for r in revisions for f in r.files
        ]
        sizes = {sha: size for *_, sha, size in rows}
        theirs = held_only_elsewhere(session, ctx.settings.node_name, sizes)
    report = VerifyReport(revisions=len(revisions), files=len(rows), elsewhere=len(theirs))
    rows = [row for row in rows if row[3] not in theirs]
    sizes = {sha: size for sha, size in sizes.items() if sha not in theirs}
    report.blobs = len(sizes)
    report.bytes = sum(sizes.values())

    def check(sha256: str) -> tuple[str, str | None]:
        actual = _digest_or_none(ctx, sha256)
        if on_blob is not None:
            on_blob(sizes[sha256])
        return sha256, actual

    with ThreadPoolExecutor(max_workers=ctx.settings.verify_workers) as pool:
        actual = dict(pool.map(check, sorted(sizes)))
    report.mislinked = _mislinked(ctx, rows)
    report.damaged = [
        Damage(repo, commit, path, sha, actual[sha])
        for repo, commit, path, sha, _ in rows
        if actual[sha] != sha
    ]
    return report
