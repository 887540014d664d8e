"""Listing the catalog by page: `hubd ls` and a peer's sync cursor, each bounded in SQL.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, defer, selectinload

from .models import File, ModelCard, Ref, Repo, Revision, RevisionState


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


@dataclass(frozen=True)
class HubModel:
    """A repo as `GET /api/models` lists it: its latest verified revision and that one's card."""

    repo_id: str
    commit: str
    mirrored_at: datetime
    card: ModelCard | None
    files: list[tuple[str, int]]


@dataclass(frozen=True)
class HubModelPage:
    """One page of hub_models; ``next`` is the key the following page starts after."""

    models: list[HubModel]
    next: tuple[str, str] | None  # (mirrored_at ISO or "", repo_id)


def hub_models(
    session: Session,
    *,
    limit: int,
    after: tuple[str, str] | None = None,
    search: str | None = None,
    author: str | None = None,
    by_time: bool = False,
    descending: bool = False,
    keep: Callable[[HubModel], bool] | None = None,
    with_files: bool = False,
) -> HubModelPage:
    """Repos with a verified revision, keyset-paged by repo id or by (mirrored_at, repo id).

    The key is the repo's latest verified revision (the one it is listed with); ``search`` is a
    case-insensitive substring of the repo id, ``author`` its exact owner. ``keep`` filters what
    SQL cannot (tags in a JSON list): candidates are read in batches until the page is full, so
    a page is short only when it is the last; ``next`` is the key of the page's last model.
    """
    latest = (
        select(Revision.repo_pk, func.max(Revision.mirrored_at).label("at"))
        .where(Revision.state == RevisionState.VERIFIED)
        .group_by(Revision.repo_pk)
        .subquery()
    )
    candidates = select(Repo.id, Repo.repo_id, latest.c.at).join(
        latest, latest.c.repo_pk == Repo.id
    )
    if search:
        needle = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        candidates = candidates.where(func.lower(Repo.repo_id).like(f"%{needle}%", escape="\\"))
    if author:
        prefix = f"{author}/"  # exact: LIKE ignores case in SQLite, not in PostgreSQL
        candidates = candidates.where(func.substr(Repo.repo_id, 1, len(prefix)) == prefix)
    order = [latest.c.at, Repo.repo_id] if by_time else [Repo.repo_id]
    candidates = candidates.order_by(*(c.desc() if descending else c for c in order))
    kept: list[HubModel] = []
    key = after
    batch = limit + 1 if keep is None else max(4 * limit, 100)
    while True:
        stmt = candidates
        if key is not None:
            stmt = stmt.where(_after(key, latest.c.at, by_time, descending))
        rows = session.execute(stmt.limit(batch)).all()
        for model in _hub_models(session, rows, with_files):
            key = (model.mirrored_at.isoformat() if by_time else "", model.repo_id)
            if keep is None or keep(model):
                kept.append(model)
                if len(kept) > limit:
                    last = kept[limit - 1]
                    start = (last.mirrored_at.isoformat() if by_time else "", last.repo_id)
                    return HubModelPage(kept[:limit], start)
        if len(rows) < batch:
            return HubModelPage(kept, None)


def _after(key: tuple[str, str], at: Any, by_time: bool, descending: bool) -> Any:
    when, repo_id = key
    if not by_time:
        return Repo.repo_id < repo_id if descending else Repo.repo_id > repo_id
    moment = datetime.fromisoformat(when)
    if descending:
        return or_(at < moment, and_(at == moment, Repo.repo_id < repo_id))
    return or_(at > moment, and_(at == moment, Repo.repo_id > repo_id))


def _hub_models(session: Session, rows: Sequence[Any], with_files: bool) -> list[HubModel]:
    """The latest verified revision and card of each (repo pk, repo id, mirrored_at) row."""
    if not rows:
        return []
    pks = [pk for pk, _, _ in rows]
    revisions = session.execute(
        select(Revision.repo_pk, Revision.id, Revision.commit, Revision.mirrored_at)
        .where(Revision.repo_pk.in_(pks), Revision.state == RevisionState.VERIFIED)
        .order_by(Revision.mirrored_at, Revision.id)  # the last one mirrored wins, as in `hubd ls`
    ).all()
    newest = {repo_pk: (rev_pk, commit, at) for repo_pk, rev_pk, commit, at in revisions}
    rev_pks = [rev_pk for rev_pk, _, _ in newest.values()]
    cards = {
        c.revision_pk: c
        for c in session.scalars(
            select(ModelCard)
            .where(ModelCard.revision_pk.in_(rev_pks))
            .options(defer(ModelCard.text))
        )
    }
    files: dict[int, list[tuple[str, int]]] = {}
    if with_files:
        listed = select(File.revision_pk, File.path, File.size).where(File.revision_pk.in_(rev_pks))
        for rev_pk, path, size in session.execute(listed.order_by(File.path)):
            files.setdefault(rev_pk, []).append((path, size))
    models = []
    for pk, repo_id, _ in rows:
        rev_pk, commit, at = newest[pk]
        models.append(HubModel(repo_id, commit, at, cards.get(rev_pk), files.get(rev_pk, [])))
    return models


def listed(session: Session, repo_id: str) -> bool:
    """Whether `GET /api/models` lists a repo: it has a verified revision."""
    found = session.scalar(
        select(Revision.id)
        .join(Repo)
        .where(Repo.repo_id == repo_id, Revision.state == RevisionState.VERIFIED)
        .limit(1)
    )
    return found is not None
