"""Removing revisions (``hubd rm``) and unreferenced blobs (``hubd gc``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog.nodes import forget_locations, node_blobs
from ..catalog.revisions import (
    delete_revision,
    delete_unreferenced_blobs,
    get_repo,
    referenced_blobs,
    require_revision,
)
from ..context import Context
from ..refs import RepoRef


@dataclass(frozen=True)
class GcResult:
    removed: int
    freed_bytes: int
    strays: list[str]  # entries under blobs/ that are not blobs: reported, never followed


def remove(ctx: Context, ref: RepoRef) -> list[str]:
    """Forget one revision (or every revision of the repo); blobs stay until ``gc``."""
    with ctx.catalog.begin() as session:
        if ref.revision is None:
            revisions = list(get_repo(session, ref.repo_id).revisions)
        else:
            revisions = [require_revision(session, ref.repo_id, ref.revision)]
        commits = [r.commit for r in revisions]
        for revision in revisions:
            delete_revision(session, revision)
    for commit in commits:
        ctx.store.remove_snapshot(ref.repo_id, commit)
    return commits


def collect(ctx: Context, partials: bool = False) -> GcResult:
    """Delete blobs no revision references, and optionally interrupted transfers.

    The catalog then stops naming this node as a holder of any blob its store no longer has, so
    no other node asks it for one.
    """
    node = ctx.settings.node_name
    with ctx.store.guard(exclusive=True), ctx.catalog.begin() as session:
        delete_unreferenced_blobs(session)
        keep = referenced_blobs(session)
        removed, freed = ctx.store.collect_garbage(keep, partials=partials)
        gone = [d for d in node_blobs(session, node) if not ctx.store.has_blob(d)]
        forget_locations(session, node, gone)
        strays = [str(p) for p in ctx.store.strays()]
    return GcResult(removed, freed, strays)
