"""Listing the catalog by page: `hubd ls` and a peer's sync cursor, each bounded in SQL.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, selectinload

from .models import ModelCard, Ref, Repo, Revision, RevisionState


@dataclass(frozen=True)
class RepoPage:
    """One page of `hubd ls`; ``next`` is the ``after`` of the following page (None: the last)."""

    repos: list[dict[str, Any]]
    next: str | None


def repo_page(
    session: Session,
    *,
    limit: int | None = None,
    after: str | None = None,
    kind: str | None = None,
    org: str | None = None,
) -> RepoPage:
    """`hubd ls`: views.repo_summary of the repos after ``after`` by repo id, computed in SQL.

    Keyset paging on the unique repo_id index: a page of repos first (one more than asked, to
    know whether another page follows), then their counts, latest revisions and refs, each
    query bounded by the page. Summarising every repo at once took seconds at 100,000
    revisions (bench/catalog.py) and stays the path of ``limit=None``.
    """
    page = select(Repo.id, Repo.repo_id, Repo.kind).order_by(Repo.repo_id)
    if after is not None:
        page = page.where(Repo.repo_id > after)
    if kind is not None:
        page = page.where(Repo.kind == kind)
    if org is not None:
        prefix = f"{org}/"  # compared exactly: LIKE ignores case in SQLite, not in PostgreSQL
        page = page.where(func.substr(Repo.repo_id, 1, len(prefix)) == prefix)
    if limit is not None:
        page = page.limit(limit + 1)
    repos = session.execute(page).all()
    more = limit is not None and len(repos) > limit
    repos = repos[:limit] if limit is not None else repos
    if not repos:
        return RepoPage([], None)
    pks = [pk for pk, _, _ in repos]
    whole = limit is None and after is None and kind is None and org is None
    latest = select(
        Revision.repo_pk,
        func.count().label("revisions"),
        func.max(Revision.mirrored_at).label("mirrored_at"),
    ).group_by(Revision.repo_pk)
    if not whole:
        latest = latest.where(Revision.repo_pk.in_(pks))
    last = latest.subquery()
    stmt = (
        select(
            last.c.repo_pk,
            last.c.revisions,
            ModelCard.license,
            Revision.base_model,
            Revision.mirrored_at,
        )
        .select_from(last)  # from the aggregate: SQLite's planner then scans it only once
        .join(
            Revision,
            and_(Revision.repo_pk == last.c.repo_pk, Revision.mirrored_at == last.c.mirrored_at),
        )
        .outerjoin(ModelCard, ModelCard.revision_pk == Revision.id)
        .order_by(Revision.id)  # two revisions mirrored at once: the later one wins
    )
    ref_rows = select(Ref.repo_pk, Ref.name, Ref.commit).order_by(Ref.id)
    if not whole:  # the page's repos only: PostgreSQL would otherwise hash all revisions
        stmt = stmt.where(Revision.repo_pk.in_(pks))
        ref_rows = ref_rows.where(Ref.repo_pk.in_(pks))
    latest_of = {pk: rest for pk, *rest in session.execute(stmt)}
    refs: dict[int, dict[str, str]] = {}
    for repo_pk, name, commit in session.execute(ref_rows):
        refs.setdefault(repo_pk, {})[name] = commit
    summaries = []
    for pk, repo_id, repo_kind in repos:
        if pk not in latest_of:  # a repo goes with its last revision: never listed without one
            continue
        count, license, base_model, mirrored_at = latest_of[pk]
        summaries.append(
            {
                "repo": repo_id,
                "kind": repo_kind,
                "revisions": count,
                "refs": refs.get(pk, {}),
                "license": license,
                "base_model": base_model,
                "mirrored_at": mirrored_at.isoformat(),
            }
        )
    return RepoPage(summaries, repos[-1][1] if more else None)


def repo_summaries(session: Session) -> list[dict[str, Any]]:
    """Every repo's summary (one unbounded page)."""
    return repo_page(session).repos


def catalog_page(session: Session, since: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Verified revisions mirrored after ``since``, oldest first (a peer's sync cursor)."""
    stmt = (
        select(Revision)
        .join(Repo)
        .where(Revision.state == RevisionState.VERIFIED)
        .options(selectinload(Revision.repo), selectinload(Revision.files))
        .order_by(Revision.mirrored_at, Revision.id)
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(Revision.mirrored_at > since)
    return [
        {
            "repo": r.repo.repo_id,
            "commit": r.commit,
            "mirrored_at": r.mirrored_at.isoformat(),
            "files": len(r.files),
            "size": sum(f.size for f in r.files),
        }
        for r in session.scalars(stmt)
    ]
