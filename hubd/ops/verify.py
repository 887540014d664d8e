"""``hubd verify``: re-hash stored blobs in parallel and name every damaged file.

``--repair`` (hubd.ops.repair) then fetches each damaged blob again and records the outcome
here, one :class:`BlobRepair` per distinct blob.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    computed_field,
    model_serializer,
)

from ..catalog.nodes import held_only_elsewhere
from ..catalog.revisions import revisions_with_files
from ..context import Context
from ..validation import Commit, Sha256, Size


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Damage(_Entry):
    repo: str
    commit: Commit
    path: str
    expected: Sha256
    actual: str | None = Field(description="null when the blob is missing")


class MisLinked(_Entry):
    """A snapshot file that does not lead to the blob the catalog names for it."""

    repo: str
    commit: Commit
    path: str
    expected: Sha256 = Field(description="the catalog's sha256")
    actual: str | None = Field(
        description="where the link points instead; null when there is no link"
    )


class BlobRepair(_Entry):
    """What ``--repair`` did for one damaged blob (every file that shares it)."""

    sha256: Sha256
    repaired: bool = Field(description="fetched again and verified: back in the store")
    source: str | None = Field(
        description="the endpoint (peer or Hub) the revision was mirrored again from; null when "
        "not repaired, or when that mirror failed on another file",
    )
    quarantine: str | None = Field(
        description="where the damaged copy is kept while the blob is not repaired; null once "
        "repaired or when the blob was missing",
    )
    reason: str | None = Field(description="why it is still damaged: each attempt, by revision")


class SignatureCheck(_Entry):
    """One revision's trust verdict (``--signatures``)."""

    repo: str
    commit: Commit
    ok: bool
    reasons: list[str]
    signers: list[str]


def _absent(value: object) -> bool:
    return value is None


class VerifyReport(BaseModel):
    """What ``hubd verify`` found: counts, damaged and mislinked files, and what was done."""

    # The schema describes the JSON as written: ``ok`` (computed) in it, unset lists left out.
    model_config = ConfigDict(
        extra="forbid", title="hubd verify --json", json_schema_mode_override="serialization"
    )

    revisions: Size
    files: Size
    blobs: Size = Field(description="distinct blobs hashed (each once)")
    bytes: Size
    damaged: list[Damage] = Field(description="as found, before any repair")
    mislinked: list[MisLinked] = Field(
        default_factory=list,
        description="snapshot files that do not lead to the blob the catalog names (a swapped "
        "or missing link); --repair points them back",
    )
    elsewhere: Size = Field(
        default=0,
        description="blobs of a shared catalog that only other nodes' stores hold (theirs to "
        "verify; not hashed here)",
    )
    repairs: list[BlobRepair] | None = Field(
        default=None,
        exclude_if=_absent,
        description="with --repair, when something was damaged: one entry per distinct damaged "
        "blob (its files are the damaged entries with this expected digest); ok is then true "
        "when every one was repaired",
    )
    signatures: list[SignatureCheck] | None = Field(
        default=None,
        exclude_if=_absent,
        description="with --signatures (once every hash matched): each revision's trust verdict",
    )

    @property
    def unrepaired(self) -> list[Damage]:
        fixed = {r.sha256 for r in self.repairs or () if r.repaired}
        return [d for d in self.damaged if d.expected not in fixed]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Nothing left damaged or mislinked, and every signature checked holds."""
        signed = not any(s.reasons for s in self.signatures or ())
        return not self.unrepaired and not self.mislinked and signed

    @model_serializer(mode="wrap")
    def _ok_first(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``ok`` leads the JSON, where a person or a script looks first."""
        data: dict[str, Any] = handler(self)
        return {"ok": data.pop("ok"), **data}


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
            target = os.path.normpath(link.parent / link.readlink())
        except OSError:
            found.append(MisLinked(repo=repo, commit=commit, path=path, expected=sha, actual=None))
            continue
        if target != expected:
            found.append(
                MisLinked(repo=repo, commit=commit, path=path, expected=sha, actual=target)
            )
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
        # In a bucket every node's blobs are this node's to verify.
        theirs = (
            held_only_elsewhere(session, ctx.settings.node_name, sizes)
            if ctx.store.local_blobs
            else set()
        )
    files = len(rows)
    rows = [row for row in rows if row[3] not in theirs]
    sizes = {sha: size for sha, size in sizes.items() if sha not in theirs}

    def check(sha256: str) -> tuple[str, str | None]:
        actual = ctx.store.digest_of(sha256)
        if on_blob is not None:
            on_blob(sizes[sha256])
        return sha256, actual

    with ThreadPoolExecutor(max_workers=ctx.settings.verify_workers) as pool:
        actual = dict(pool.map(check, sorted(sizes)))
    return VerifyReport(
        revisions=len(revisions),
        files=files,
        blobs=len(sizes),
        bytes=sum(sizes.values()),
        damaged=[
            Damage(repo=repo, commit=commit, path=path, expected=sha, actual=actual[sha])
            for repo, commit, path, sha, _ in rows
            if actual[sha] != sha
        ],
        mislinked=_mislinked(ctx, rows),
        elsewhere=len(theirs),
    )
