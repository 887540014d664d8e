"""Listing the catalog by page: `hubd ls`, a peer's sync cursor, `GET /api/models`; bounded in SQL.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Integer, String, and_, any_, bindparam, cast, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from .models import File, ModelCard, Ref, Repo, Revision, RevisionState, RevisionTag


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
    tags: list[str]  # ModelCard.tags_for_hub, as revision_tags keeps them
    pipeline_tag: str | None
    library_name: str | None
    card_data: dict[str, Any] | None  # only when asked for (with_card_data)
    files: list[tuple[str, int]]

    def key(self, by_time: bool) -> tuple[str, str]:
        """Where the page after this model starts, in hub_models' order."""
        return (
            (self.mirrored_at.isoformat(), str(self.revision_pk)) if by_time else ("", self.repo_id)
        )


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
    with_card_data: bool = False,
) -> HubModelPage:
    """Repos with a verified revision, keyset-paged by repo id or by (mirrored_at, revision pk).

    Each repo is listed with its latest verified revision. By id, that one is found per repo
    (ix_revisions_repo_latest) while the unique repo_id index is walked, stopping at the page.
    By time, verified revisions are walked newest (or oldest) first, keeping those no later
    verified revision of their repo follows: without an index on (state, mirrored_at) that
    reads every revision. ``search`` is a case-insensitive substring of the repo id,
    ``author`` the exact owner, ``tags`` all of the Hub's tags (revision_tags, exact). With tags,
    the rarest one drives the query when walking the order would read more rows than it has:
    matches^2 <= limit * repos (a rare tag is sought, its rows sorted; a common one is checked
    row by row along the order), so either way a page reads about sqrt(limit * repos) rows at most.
    """
    wanted = list(dict.fromkeys(tags))
    driving: str | None = None
    if wanted:
        repos = session.scalar(select(func.count()).select_from(Repo)) or 0
        enough = math.isqrt(limit * repos) + 1  # more matches than this: walk the order
        counts = {tag: _tag_count(session, tag, enough) for tag in wanted}
        rarest = min(wanted, key=counts.__getitem__)
        if counts[rarest] == 0:
            return HubModelPage([], None)
        if counts[rarest] < enough:
            driving = rarest
            wanted.remove(rarest)
    candidates = select(Repo.repo_id, Revision.id, Revision.commit, Revision.mirrored_at)
    if by_time or driving is not None:
        # From the revisions (in time order, or the driving tag's), keeping each repo's latest.
        candidates = candidates.select_from(Revision).join(Repo, Repo.id == Revision.repo_pk)
        candidates = candidates.where(~_superseded())
        if driving is None:
            candidates = candidates.where(Revision.state == RevisionState.VERIFIED)
        else:
            tagged = select(RevisionTag.revision_pk).where(RevisionTag.tag == driving)
            # The state as an expression, not a column: without statistics SQLite would walk
            # ix_revisions_state_time (every verified revision) rather than the tag's rows.
            verified = cast(Revision.state, String) == RevisionState.VERIFIED.value
            candidates = candidates.where(Revision.id.in_(tagged), verified)
    else:
        # Along the repo ids, each with its latest verified revision.
        latest = (
            select(Revision.id)
            .where(Revision.repo_pk == Repo.id, Revision.state == RevisionState.VERIFIED)
            .order_by(Revision.mirrored_at.desc(), Revision.id.desc())  # the later one wins
            .limit(1)
            .correlate(Repo)
            .scalar_subquery()
        )
        candidates = candidates.join(Revision, Revision.id == latest)
    candidates = candidates.where(*(_tagged(tag) for tag in wanted))
    if search:
        candidates = candidates.where(
            func.lower(Repo.repo_id).contains(search.lower(), autoescape=True)
        )
    if author:
        prefix = f"{author}/"  # exact: LIKE ignores case in SQLite, not in PostgreSQL
        candidates = candidates.where(func.substr(Repo.repo_id, 1, len(prefix)) == prefix)
    order = [Revision.mirrored_at, Revision.id] if by_time else [Repo.repo_id]
    candidates = candidates.order_by(*(c.desc() if descending else c for c in order))
    if after is not None:
        candidates = candidates.where(_after(after, by_time, descending))
    found = session.execute(candidates.limit(limit + 1)).all()
    models = _hub_models(session, found, with_files, with_card_data)
    if len(models) > limit:
        return HubModelPage(models[:limit], models[limit - 1].key(by_time))
    return HubModelPage(models, None)


def _superseded() -> Any:
    """A later verified revision of the same repo exists (later mirrored, or same time and pk)."""
    later = aliased(Revision)
    return (
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


def _tag_count(session: Session, tag: str, most: int) -> int:
    """Revisions carrying ``tag``, counted up to ``most`` (an index range, read no further)."""
    carrying = select(RevisionTag.revision_pk).where(RevisionTag.tag == tag).limit(most)
    return session.scalar(select(func.count()).select_from(carrying.subquery())) or 0


def _tagged(tag: str) -> Any:
    other = aliased(RevisionTag)  # the driving tag's table may be in the outer query
    return select(other.tag).where(other.revision_pk == Revision.id, other.tag == tag).exists()


def _after(key: tuple[str, str], by_time: bool, descending: bool) -> Any:
    when, last = key
    if not by_time:
        return Repo.repo_id < last if descending else Repo.repo_id > last
    at, moment, pk = Revision.mirrored_at, datetime.fromisoformat(when), int(last)
    if descending:
        return or_(at < moment, and_(at == moment, Revision.id < pk))
    return or_(at > moment, and_(at == moment, Revision.id > pk))


def _hub_models(
    session: Session, rows: Sequence[Any], with_files: bool, with_card_data: bool
) -> list[HubModel]:
    """The listed fields for rows of (repo id, revision pk, commit, at), read without decoding
    the cards' JSON (a page of 1,000 would spend most of its time there) unless cardData is
    asked for: tags from revision_tags."""
    if not rows:
        return []
    rev_pks = [rev_pk for _, rev_pk, _, _ in rows]
    postgres = session.get_bind().dialect.name == "postgresql"

    def among(column: Any) -> Any:
        """``column IN rev_pks``; on PostgreSQL one array parameter rather than a thousand
        (psycopg parses every placeholder of a query: 100 ms a page at a thousand)."""
        return (
            column == any_(bindparam("pks", rev_pks, ARRAY(Integer)))
            if postgres
            else column.in_(rev_pks)
        )

    cards = select(ModelCard.revision_pk, ModelCard.pipeline_tag, ModelCard.library_name)
    named: dict[int, tuple[str | None, str | None]] = {
        pk: (pipeline, library)
        for pk, pipeline, library in session.execute(cards.where(among(ModelCard.revision_pk)))
    }
    card_data: dict[int, dict[str, Any]] = {}
    if with_card_data:
        data = select(ModelCard.revision_pk, ModelCard.data)
        found = session.execute(data.where(among(ModelCard.revision_pk)))
        card_data = {pk: value for pk, value in found}
    tags: dict[int, list[str]] = {}
    tagged = select(RevisionTag.revision_pk, RevisionTag.tag).where(among(RevisionTag.revision_pk))
    for rev_pk, tag in session.execute(tagged.order_by(RevisionTag.position)):
        tags.setdefault(rev_pk, []).append(tag)
    files: dict[int, list[tuple[str, int]]] = {}
    if with_files:
        listed = select(File.revision_pk, File.path, File.size).where(among(File.revision_pk))
        for rev_pk, path, size in session.execute(listed.order_by(File.path)):
            files.setdefault(rev_pk, []).append((path, size))
    return [
        HubModel(
            repo_id,
            rev_pk,
            commit,
            at,
            tags.get(rev_pk, []),
            *named.get(rev_pk, (None, None)),
            card_data.get(rev_pk),
            files.get(rev_pk, []),
        )
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
