"""``hubd verify``: re-hash stored blobs in parallel and name every damaged file."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..catalog.queries import revisions_with_files
from ..context import Context
from .hashes import sha256_file


@dataclass(frozen=True)
class Damage:
    repo: str
    commit: str
    path: str
    expected: str
    actual: str | None  # None: the blob is missing


@dataclass
class VerifyReport:
    revisions: int = 0
    files: int = 0
    blobs: int = 0
    bytes: int = 0
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "revisions": self.revisions,
            "files": self.files,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "damaged": [d.__dict__ for d in self.damaged],
        }


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
    """Hash each distinct blob once, on ``verify.workers`` threads (hashlib drops the GIL)."""
    with ctx.catalog() as session:
        revisions = revisions_with_files(session, repo_id)
        rows = [
            (r.repo.repo_id, r.commit, f.path, f.sha256, f.size) for r in revisions for f in r.files
        ]
    report = VerifyReport(revisions=len(revisions), files=len(rows))
    sizes = {sha: size for *_, sha, size in rows}
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
