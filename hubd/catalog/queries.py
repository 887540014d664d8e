"""Plain query functions over a catalog Session; callers own the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import ColumnElement

from ..errors import NotFound, ReplayedRevision, RevisionNotFound
from .models import (
    Blob,
    BlobLocation,
    File,
    ModelCard,
    Node,
    Provenance,
    Ref,
    Repo,
    Revision,
    utcnow,
)


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str
    git_oid: str | None
    lfs: bool
    source: str | None = None  # the endpoint that served the bytes


@dataclass(frozen=True)
class CardRecord:
    """Model-card metadata as recorded; built from huggingface_hub's ModelCard by the caller."""

    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    base_model: list[str] = field(default_factory=list)
    base_model_relation: str | None = None
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    language: list[str] = field(default_factory=list)
    gated: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


@dataclass(frozen=True)
class RevisionRecord:
    repo_id: str
    commit: str
    source_endpoint: str
    refs: Sequence[str]
    files: Sequence[FileRecord]
    card: CardRecord
    is_adapter: bool
    base_model: str | None
    node: str
    client: str
    fetched_at: datetime
    upstream: Sequence[dict[str, str]] = ()  # hops recorded by the hubd node we mirrored from
    source_url: str | None = None  # default: {source_endpoint}/{repo_id}


def _get_or_create_repo(session: Session, repo_id: str) -> Repo:
    repo = session.scalar(select(Repo).where(Repo.repo_id == repo_id))
    if repo is None:
        repo = Repo(repo_id=repo_id)
        session.add(repo)
        session.flush()
    return repo


def record_revision(session: Session, rec: RevisionRecord) -> Revision:
    """Insert or extend a verified revision with its files, card, refs and provenance hop."""
    repo = _get_or_create_repo(session, rec.repo_id)
    if rec.is_adapter:
        repo.kind = "adapter"
    revision = session.scalar(
        select(Revision).where(Revision.repo_pk == repo.id, Revision.commit == rec.commit)
    )
    if revision is None:
        revision = Revision(
            repo=repo,
            commit=rec.commit,
            source_endpoint=rec.source_endpoint,
            mirrored_at=rec.fetched_at,
        )
        session.add(revision)
    revision.state = "verified"
    revision.is_adapter = rec.is_adapter
    revision.base_model = rec.base_model
    session.flush()

    known = {
        blob
        for blob in session.scalars(
            select(Blob.sha256).where(Blob.sha256.in_({f.sha256 for f in rec.files}))
        )
    }
    have = {f.path: f for f in revision.files}
    for item in rec.files:
        if item.sha256 not in known:
            session.add(Blob(sha256=item.sha256, size=item.size))
            known.add(item.sha256)
        row = have.get(item.path)
        if row is None:
            revision.files.append(
                File(
                    path=item.path,
                    size=item.size,
                    sha256=item.sha256,
                    git_oid=item.git_oid,
                    lfs=item.lfs,
                    source=item.source,
                )
            )
        elif row.sha256 != item.sha256:
            raise ReplayedRevision(
                f"{rec.repo_id}@{rec.commit[:12]}: {item.path} is {item.sha256[:16]}… from "
                f"{rec.source_endpoint} but {row.sha256[:16]}… in the catalog's copy of the same "
                "commit; refusing to change a file within a commit"
            )

    card = rec.card
    revision.card = (
        ModelCard(
            license=card.license,
            license_name=card.license_name,
            license_link=card.license_link,
            base_model=card.base_model,
            base_model_relation=card.base_model_relation,
            datasets=card.datasets,
            tags=card.tags,
            pipeline_tag=card.pipeline_tag,
            language=card.language,
            gated=card.gated,
            data=card.data,
            text=card.text,
        )
        if revision.card is None
        else _update_card(revision.card, card)
    )

    for name in rec.refs:
        ref = session.scalar(select(Ref).where(Ref.repo_pk == repo.id, Ref.name == name))
        if ref is None:
            session.add(Ref(repo=repo, name=name, commit=rec.commit))
        else:
            ref.commit = rec.commit
            ref.updated_at = utcnow()

    if not revision.provenance:
        for hop in rec.upstream:
            revision.provenance.append(
                Provenance(
                    hop=len(revision.provenance),
                    source_url=hop["source"],
                    commit=hop["commit"],
                    node=hop["node"],
                    fetched_at=datetime.fromisoformat(hop["fetched_at"]),
                    client=hop["client"],
                )
            )
    source_url = rec.source_url or f"{rec.source_endpoint}/{rec.repo_id}"
    if not any(p.source_url == source_url and p.node == rec.node for p in revision.provenance):
        revision.provenance.append(
            Provenance(
                hop=len(revision.provenance),
                source_url=source_url,
                commit=rec.commit,
                node=rec.node,
                fetched_at=rec.fetched_at,
                client=rec.client,
            )
        )
    session.flush()
    record_locations(session, rec.node, {f.sha256 for f in rec.files})
    return revision


def _update_card(row: ModelCard, card: CardRecord) -> ModelCard:
    for name in CardRecord.__dataclass_fields__:
        setattr(row, name, getattr(card, name))
    return row


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


def get_repo(session: Session, repo_id: str) -> Repo:
    repo = session.scalar(
        select(Repo)
        .where(Repo.repo_id == repo_id)
        .options(
            selectinload(Repo.revisions).selectinload(Revision.files),
            selectinload(Repo.revisions).selectinload(Revision.card),
            selectinload(Repo.revisions).selectinload(Revision.provenance),
            selectinload(Repo.refs),
        )
    )
    if repo is None:
        raise NotFound(f"{repo_id} is not in the catalog", hint="see `hubd ls`")
    return repo


def find_ref(session: Session, repo_id: str, name: str) -> Ref | None:
    return session.scalar(select(Ref).join(Repo).where(Repo.repo_id == repo_id, Ref.name == name))


def commit_for(session: Session, repo_id: str, revision: str | None) -> str | None:
    """The commit a ref names, or the one commit a 7+ hex prefix matches; None means main."""
    name = revision or "main"
    ref_commit = session.scalar(
        select(Ref.commit).join(Repo).where(Repo.repo_id == repo_id, Ref.name == name)
    )
    if ref_commit is not None:
        return ref_commit
    if len(name) >= 7:
        matches = list(
            session.scalars(
                select(Revision.commit)
                .join(Repo)
                .where(Repo.repo_id == repo_id, Revision.commit.startswith(name))
                .limit(2)
            )
        )
        if len(matches) == 1:
            return matches[0]
    return None


def find_revision(session: Session, repo_id: str, revision: str | None) -> Revision | None:
    """A revision (files, card, provenance loaded) by commit, commit prefix or ref name."""
    commit = commit_for(session, repo_id, revision)
    if commit is None:
        return None
    return session.scalar(
        select(Revision)
        .join(Repo)
        .where(Repo.repo_id == repo_id, Revision.commit == commit)
        .options(
            selectinload(Revision.files),
            selectinload(Revision.card),
            selectinload(Revision.repo),
            selectinload(Revision.provenance),
        )
    )


def require_revision(session: Session, repo_id: str, revision: str | None) -> Revision:
    """find_revision, or RevisionNotFound saying how to get it."""
    found = find_revision(session, repo_id, revision)
    if found is None:
        raise RevisionNotFound(
            f"{repo_id}@{revision or 'main'} is not in the catalog",
            hint=f"`hubd show {repo_id}` lists what is; `hubd mirror` fetches it",
        )
    return found


def verified_file(session: Session, repo_id: str, commit: str, path: str) -> File | None:
    """One file of a verified revision: what serving a download needs, in one query."""
    return session.scalar(
        select(File)
        .join(Revision)
        .join(Repo)
        .where(
            Repo.repo_id == repo_id,
            Revision.commit == commit,
            Revision.state == "verified",
            File.path == path,
        )
    )


def ref_names(session: Session, revision: Revision) -> list[str]:
    return sorted(
        session.scalars(
            select(Ref.name).where(Ref.repo_pk == revision.repo_pk, Ref.commit == revision.commit)
        )
    )


def referenced_blobs(session: Session) -> set[str]:
    return set(session.scalars(select(File.sha256).distinct()))


def delete_revision(session: Session, revision: Revision) -> None:
    """Drop a revision and the refs pointing at it; the repo goes with its last revision."""
    repo_pk = revision.repo_pk
    session.execute(delete(Ref).where(Ref.repo_pk == repo_pk, Ref.commit == revision.commit))
    session.delete(revision)
    session.flush()
    remaining = session.scalar(select(func.count()).where(Revision.repo_pk == repo_pk))
    if not remaining:
        session.execute(delete(Repo).where(Repo.id == repo_pk))


def delete_unreferenced_blobs(session: Session) -> None:
    session.execute(delete(Blob).where(Blob.sha256.not_in(select(File.sha256).distinct())))


def revisions_with_files(session: Session, repo_id: str | None = None) -> list[Revision]:
    stmt = (
        select(Revision)
        .join(Repo)
        .options(selectinload(Revision.files), selectinload(Revision.repo))
        .order_by(Repo.repo_id, Revision.mirrored_at)
    )
    if repo_id is not None:
        stmt = stmt.where(Repo.repo_id == repo_id)
    return list(session.scalars(stmt))


def derived_repos(session: Session, base_repo: str, relation: str) -> list[str]:
    """Repos whose card names ``base_repo`` as base with this relation (e.g. quantized)."""
    return list(
        session.scalars(
            select(Repo.repo_id)
            .join(Revision)
            .join(ModelCard)
            .where(Revision.base_model == base_repo, ModelCard.base_model_relation == relation)
            .distinct()
            .order_by(Repo.repo_id)
        )
    )


def repo_exists(session: Session, repo_id: str) -> bool:
    return session.scalar(select(Repo.id).where(Repo.repo_id == repo_id)) is not None


def catalog_page(session: Session, since: datetime | None, limit: int) -> list[dict[str, Any]]:
    """Verified revisions mirrored after ``since``, oldest first (a peer's sync cursor)."""
    stmt = (
        select(Revision)
        .join(Repo)
        .where(Revision.state == "verified")
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


def ensure_node(session: Session, name: str) -> Node:
    """The nodes row of ``name``, created (without a URL) on its first record."""
    node = session.scalar(select(Node).where(Node.name == name))
    if node is None:
        node = Node(name=name)
        session.add(node)
        session.flush()
    return node


def register_node(session: Session, name: str, url: str) -> None:
    """A daemon announces where its Hub API answers (`hubd daemon` at start)."""
    node = ensure_node(session, name)
    node.url = url
    node.last_seen = utcnow()
    session.flush()


def record_locations(session: Session, node: str, digests: Collection[str]) -> None:
    """``node``'s store holds these blobs (recorded in ``blobs`` already)."""
    ensure_node(session, node)
    held = set(
        session.scalars(
            select(BlobLocation.sha256).where(
                BlobLocation.node == node, BlobLocation.sha256.in_(digests)
            )
        )
    )
    session.add_all(BlobLocation(sha256=d, node=node) for d in sorted(set(digests) - held))
    session.flush()


def node_blobs(session: Session, node: str) -> list[str]:
    """The blobs the catalog says ``node``'s store holds."""
    return list(session.scalars(select(BlobLocation.sha256).where(BlobLocation.node == node)))


def held_only_elsewhere(session: Session, node: str, digests: Collection[str]) -> set[str]:
    """Those of ``digests`` the catalog places on other nodes' stores and not on ``node``'s."""
    rows = session.execute(
        select(BlobLocation.sha256, BlobLocation.node).where(BlobLocation.sha256.in_(digests))
    )
    where: dict[str, set[str]] = {}
    for sha256, holder in rows:
        where.setdefault(sha256, set()).add(holder)
    return {sha256 for sha256, nodes in where.items() if node not in nodes}


def forget_locations(session: Session, node: str, digests: Collection[str]) -> None:
    """``node``'s store no longer holds these blobs (gc deleted them, or they were lost)."""
    if digests:
        session.execute(
            delete(BlobLocation).where(BlobLocation.node == node, BlobLocation.sha256.in_(digests))
        )


# A daemon refreshes its nodes row every minute; one silent for longer than this is not asked.
NODE_ALIVE = timedelta(minutes=5)


def _alive(exclude: str) -> ColumnElement[bool]:
    """The other nodes with a URL whose daemon was heard from lately."""
    return and_(
        Node.name != exclude,
        Node.url.is_not(None),
        Node.last_seen >= datetime.now(UTC) - NODE_ALIVE,
    )


def touch_node(session: Session, name: str) -> None:
    """This daemon is still there (its heartbeat)."""
    session.execute(update(Node).where(Node.name == name).values(last_seen=utcnow()))


def holders(session: Session, sha256: str, exclude: str) -> list[tuple[str, str]]:
    """(name, url) of the other live nodes that hold a blob, the most recently seen first."""
    return [
        (name, url)
        for name, url in session.execute(
            select(Node.name, Node.url)
            .join(BlobLocation, BlobLocation.node == Node.name)
            .where(BlobLocation.sha256 == sha256, _alive(exclude))
            .order_by(Node.last_seen.desc(), Node.name)
        )
        if url is not None
    ]


def sibling_nodes(session: Session, exclude: str) -> list[tuple[str, str]]:
    """(name, url) of the other live nodes sharing this catalog, by name."""
    return [
        (name, url)
        for name, url in session.execute(
            select(Node.name, Node.url).where(_alive(exclude)).order_by(Node.name)
        )
        if url is not None
    ]
