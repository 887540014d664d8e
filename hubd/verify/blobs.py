"""``hubd verify``: re-hash stored blobs in parallel and name every damaged file.

``--repair`` (hubd.verify.repair) then fetches each damaged blob again and records the outcome
here, one :class:`BlobRepair` per distinct blob.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..catalog.queries import held_only_elsewhere, revisions_with_files
from ..context import Context
from .hashes import sha256_file


@dataclass(frozen=True)
class Damage:
    repo: str
    commit: str
    path: str
    expected: str
    actual: str | None  # None: the blob is missing


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
    elsewhere: int = 0  # blobs only other nodes of a shared catalog hold: theirs to verify
    repairs: list[BlobRepair] | None = None  # None: no repair was asked for

    @property
    def unrepaired(self) -> list[Damage]:
        fixed = {r.sha256 for r in self.repairs or () if r.repaired}
        return [d for d in self.damaged if d.expected not in fixed]

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "revisions": self.revisions,
            "files": self.files,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "damaged": [d.__dict__ for d in self.damaged],
            "elsewhere": self.elsewhere,
        }
        if self.repairs is not None:
            data["repairs"] = [r.__dict__ for r in self.repairs]
        return data


def _digest_or_none(ctx: Context, sha256: str) -> str | None:
    try:
        return sha256_file(ctx.store.blob_path(sha256))
    except FileNotFoundError:
        return None


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
    report.damaged = [
        Damage(repo, commit, path, sha, actual[sha])
        for repo, commit, path, sha, _ in rows
        if actual[sha] != sha
    ]
    return report
