"""Listing the catalog by page: `hubd ls` and a peer's sync cursor, each bounded in SQL.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, and_, cast, func, or_, select
from sqlalchemy.orm import Session, aliased, defer, selectinload

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
    pending: bool = False,
) -> RepoPage:
    """`hubd ls`: views.repo_summary of the repos after ``after`` by repo id, computed in SQL.

    Pending revisions (a pull-through's, partly fetched) are left out, and with ``pending``
    they are all that is counted: the repos holding one.

    Keyset paging on the unique repo_id index: a page of repos first (one more than asked, to
    know whether another page follows), then their counts, latest revisions and refs, each
    query bounded by the page. Summarising every repo at once took seconds at 100,000
    revisions (bench/catalog.py) and stays the path of ``limit=None``.
    """
    state = (
        Revision.state == RevisionState.PENDING
        if pending
        else Revision.state != RevisionState.PENDING
    )
    page = select(Repo.id, Repo.repo_id, Repo.kind).order_by(Repo.repo_id)
    if pending:  # few repos have one: page over those, not over every repo
        page = page.where(select(Revision.id).where(Revision.repo_pk == Repo.id, state).exists())
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
    whole = limit is None and after is None and kind is None and org is None and not pending
    latest = (
        select(
            Revision.repo_pk,
            func.count().label("revisions"),
            func.max(Revision.mirrored_at).label("mirrored_at"),
        )
        .where(state)
        .group_by(Revision.repo_pk)
    )
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
            and_(
                Revision.repo_pk == last.c.repo_pk,
                Revision.mirrored_at == last.c.mirrored_at,
                state,
            ),
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
    revision_pk: int
    commit: str
    mirrored_at: datetime
    card: ModelCard | None
    files: list[tuple[str, int]]

    def key(self, by_time: bool) -> tuple[str, str]:
        """Where the page after this model starts, in hub_models' order."""
        return (
            (self.mirrored_at.isoformat(), str(self.revision_pk)) if by_time else ("", self.repo_id)
        )

    @property
    def tags(self) -> list[str]:
        """The Hub's tags from the card: its tags, library, task, languages, then key:value."""
        card = self.card
        if card is None:
            return []
        library = card.data.get("library_name")
        plain = [*card.tags, *([library] if isinstance(library, str) else [])]
        plain += [card.pipeline_tag] if card.pipeline_tag else []
        plain += card.language
        keyed = [f"base_model:{b}" for b in card.base_model]
        keyed += [f"dataset:{d}" for d in card.datasets]
        keyed += [f"license:{card.license}"] if card.license else []
        return list(dict.fromkeys(t for t in plain + keyed if isinstance(t, str) and t))


@dataclass(frozen=True)
class HubModelPage:
    """One page of hub_models; ``next`` is the key the following page starts after."""

    models: list[HubModel]
    next: tuple[str, str] | None  # by time (mirrored_at ISO, revision pk), else ("", repo_id)


def hub_models(
    session: Session,
    *,
    limit: int,
    after: tuple[str, str] | None = None,
    search: str | None = None,
    author: str | None = None,
    tags: Sequence[str] = (),
    by_time: bool = False,
    descending: bool = False,
    with_files: bool = False,
) -> HubModelPage:
    """Repos with a verified revision, keyset-paged by repo id or by (mirrored_at, revision pk).

    Each repo is listed with its latest verified revision. By id, that one is found per repo
    (ix_revisions_repo_latest) while the unique repo_id index is walked, stopping at the page.
    By time, verified revisions are walked newest (or oldest) first, keeping those no later
    verified revision of their repo follows: without an index on (state, mirrored_at) that
    reads every revision. ``search`` is a case-insensitive substring of the repo id,
    ``author`` the exact owner, ``tags`` all of the Hub's tags (HubModel.tags). SQL narrows by
    tag over the card's JSON text, portable but loose (SQLite's LIKE ignores case); the exact
    test is HubModel.tags, reading on in batches, so a page is short only when it is the last.
    """
    latest = (
        select(Revision.id)
        .where(Revision.repo_pk == Repo.id, Revision.state == RevisionState.VERIFIED)
        .order_by(Revision.mirrored_at.desc(), Revision.id.desc())  # the later one mirrored wins
        .limit(1)
        .correlate(Repo)
        .scalar_subquery()
    )
    candidates = select(Repo.repo_id, Revision.id, Revision.commit, Revision.mirrored_at)
    if by_time:
        later = aliased(Revision)
        superseded = (
            select(later.id)
            .where(
                later.repo_pk == Revision.repo_pk,
                later.state == RevisionState.VERIFIED,
                or_(
                    later.mirrored_at > Revision.mirrored_at,
                    and_(later.mirrored_at == Revision.mirrored_at, later.id > Revision.id),
                ),
            )
            .exists()
        )
        candidates = candidates.select_from(Revision).join(Repo, Repo.id == Revision.repo_pk)
        candidates = candidates.where(Revision.state == RevisionState.VERIFIED, ~superseded)
    else:
        candidates = candidates.join(Revision, Revision.id == latest)
    if search:
        candidates = candidates.where(
            func.lower(Repo.repo_id).contains(search.lower(), autoescape=True)
        )
    if author:
        prefix = f"{author}/"  # exact: LIKE ignores case in SQLite, not in PostgreSQL
        candidates = candidates.where(func.substr(Repo.repo_id, 1, len(prefix)) == prefix)
    wanted = set(tags)
    if wanted:
        candidates = candidates.join(ModelCard, ModelCard.revision_pk == Revision.id)
        candidates = candidates.where(*(_may_have(tag) for tag in wanted))
    order = [Revision.mirrored_at, Revision.id] if by_time else [Repo.repo_id]
    candidates = candidates.order_by(*(c.desc() if descending else c for c in order))
    kept: list[HubModel] = []
    key = after
    batch = limit + 1 if not wanted else max(2 * limit, 100)
    while True:
        stmt = candidates if key is None else candidates.where(_after(key, by_time, descending))
        rows = session.execute(stmt.limit(batch)).all()
        for model in _hub_models(session, rows, with_files):
            key = model.key(by_time)
            if wanted <= set(model.tags):
                kept.append(model)
                if len(kept) > limit:
                    return HubModelPage(kept[:limit], kept[limit - 1].key(by_time))
        if len(rows) < batch:
            return HubModelPage(kept, None)


def _may_have(tag: str) -> Any:
    """A card that could carry ``tag`` (a superset of HubModel.tags having it)."""
    kind, _, value = tag.partition(":")
    if kind == "license" and value:
        return ModelCard.license == value
    if kind in ("base_model", "dataset") and value:
        column = ModelCard.base_model if kind == "base_model" else ModelCard.datasets
        return _json_text(column, value)
    return or_(
        ModelCard.pipeline_tag == tag,
        _json_text(ModelCard.tags, tag),
        _json_text(ModelCard.language, tag),
        _json_text(ModelCard.data, tag),  # library_name
    )


def _json_text(column: Any, value: str) -> Any:
    """The column's JSON text holds ``value`` as a string (as SQLAlchemy serialises it)."""
    return cast(column, Text).contains(json.dumps(value), autoescape=True)


def _after(key: tuple[str, str], by_time: bool, descending: bool) -> Any:
    when, last = key
    if not by_time:
        return Repo.repo_id < last if descending else Repo.repo_id > last
    at, moment, pk = Revision.mirrored_at, datetime.fromisoformat(when), int(last)
    if descending:
        return or_(at < moment, and_(at == moment, Revision.id < pk))
    return or_(at > moment, and_(at == moment, Revision.id > pk))


def _hub_models(session: Session, rows: Sequence[Any], with_files: bool) -> list[HubModel]:
    """Cards (and with ``with_files`` file lists) for rows of (repo id, revision pk, commit, at)."""
    if not rows:
        return []
    rev_pks = [rev_pk for _, rev_pk, _, _ in rows]
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
    return [
        HubModel(repo_id, rev_pk, commit, at, cards.get(rev_pk), files.get(rev_pk, []))
        for repo_id, rev_pk, commit, at in rows
    ]


def listed(session: Session, repo_id: str) -> bool:
    """Whether `GET /api/models` lists a repo: it has a verified revision."""
    found = session.scalar(
        select(Revision.id)
        .join(Repo)
        .where(Repo.repo_id == repo_id, Revision.state == RevisionState.VERIFIED)
        .limit(1)
    )
    return found is not None
