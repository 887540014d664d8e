"""Repos and their revisions, files, cards and refs: recording a mirror, finding what it holds.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from ..errors import NotFound, ReplayedRevision, RevisionNotFound
from .models import (
    Blob,
    File,
    ModelCard,
    Provenance,
    Ref,
    RefKind,
    RefLog,
    Repo,
    Revision,
    RevisionState,
    RevisionTag,
    utcnow,
)
from .nodes import record_locations


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
    library_name: str | None = None
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
    ref_kind: RefKind | None = None  # of ``refs``, where the source said (else kept as it was)
    source_url: str | None = None  # default: {source_endpoint}/{repo_id}
    authored: Authored | None = None  # a commit pushed to this node, not mirrored


@dataclass(frozen=True)
class Authored:
    """What a commit pushed through the Hub's write API carries beyond its files."""

    parent: str | None
    message: str
    author: str  # the token's name
    when: datetime  # the git commit's time, also when this node recorded it
    ref_kind: RefKind = RefKind.BRANCH


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
        if rec.authored is not None:
            revision.parent = rec.authored.parent
            revision.message = rec.authored.message
            revision.author = rec.authored.author
        session.add(revision)
    revision.state = RevisionState.VERIFIED
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
            revision.files.append(_file_row(item))
        elif row.sha256 != item.sha256:
            raise ReplayedRevision(
                f"{rec.repo_id}@{rec.commit[:12]}: {item.path} is {item.sha256[:16]}… from "
                f"{rec.source_endpoint} but {row.sha256[:16]}… in the catalog's copy of the same "
                "commit; refusing to change a file within a commit"
            )

    revision.card = _update_card(revision.card or ModelCard(), rec.card)
    tags = revision.card.tags_for_hub()
    if [t.tag for t in sorted(revision.hub_tags, key=lambda t: t.position)] != tags:
        revision.hub_tags = [RevisionTag(tag=tag, position=i) for i, tag in enumerate(tags)]

    kind = rec.authored.ref_kind if rec.authored else rec.ref_kind
    for name in rec.refs:
        ref = session.scalar(select(Ref).where(Ref.repo_pk == repo.id, Ref.name == name))
        if ref is None or ref.commit != rec.commit:
            session.add(RefLog(repo_pk=repo.id, name=name, commit=rec.commit))
        if ref is None:
            session.add(Ref(repo=repo, name=name, commit=rec.commit, kind=kind))
        else:
            ref.commit = rec.commit
            ref.updated_at = utcnow()
            ref.kind = kind or ref.kind

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


def record_pending_file(
    session: Session, repo_id: str, commit: str, endpoint: str, item: FileRecord
) -> None:
    """Add one verified file to a revision the pull-through holds in part (state ``pending``).

    The row is created on the first file; a revision already verified is left as it is.
    """
    repo = _get_or_create_repo(session, repo_id)
    revision = session.scalar(
        select(Revision).where(Revision.repo_pk == repo.id, Revision.commit == commit)
    )
    if revision is None:
        revision = Revision(
            repo=repo, commit=commit, source_endpoint=endpoint, state=RevisionState.PENDING
        )
        session.add(revision)
        session.flush()
    elif revision.state == RevisionState.VERIFIED:
        return
    if session.get(Blob, item.sha256) is None:
        session.add(Blob(sha256=item.sha256, size=item.size))
    held = session.scalar(
        select(File).where(File.revision_pk == revision.id, File.path == item.path)
    )
    if held is None:
        revision.files.append(_file_row(item))
    session.flush()


def _file_row(item: FileRecord) -> File:
    return File(
        path=item.path,
        size=item.size,
        sha256=item.sha256,
        git_oid=item.git_oid,
        lfs=item.lfs,
        source=item.source,
    )


def _update_card(row: ModelCard, card: CardRecord) -> ModelCard:
    for name in CardRecord.__dataclass_fields__:
        setattr(row, name, getattr(card, name))
    return row


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
            Revision.state == RevisionState.VERIFIED,
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


def repo_refs(session: Session, repo_id: str) -> list[Ref]:
    """The repo's refs by name: what the Hub's refs route lists."""
    return list(
        session.scalars(select(Ref).join(Repo).where(Repo.repo_id == repo_id).order_by(Ref.name))
    )


def history(session: Session, revision: Revision, ref: str | None = None) -> list[Revision]:
    """A ref's history, newest first: for a commit pushed to hubd its parent chain (as far as
    the catalog holds it); else the repo's verified revisions mirrored no later than
    ``revision``, those ``ref`` pointed at (ref_log) or, with no ref (a commit asked for), all
    of them (a mirror keeps no git parents: this is the stand-in).
    """
    if revision.parent is not None or revision.author is not None:
        return parent_chain(session, revision)
    held = (
        select(Revision)
        .where(
            Revision.repo_pk == revision.repo_pk,
            Revision.state == RevisionState.VERIFIED,
            Revision.mirrored_at <= revision.mirrored_at,
        )
        .order_by(Revision.mirrored_at.desc(), Revision.id.desc())
    )
    if ref is not None:
        pointed = select(RefLog.commit).where(
            RefLog.repo_pk == revision.repo_pk, RefLog.name == ref
        )
        held = held.where(or_(Revision.commit.in_(pointed), Revision.id == revision.id))
    return list(session.scalars(held))


def parent_chain(session: Session, revision: Revision) -> list[Revision]:
    """``revision`` and its ancestors by ``parent``, newest first, until one the catalog lacks."""
    by_commit = {
        r.commit: r
        for r in session.scalars(
            select(Revision).where(
                Revision.repo_pk == revision.repo_pk, Revision.state == RevisionState.VERIFIED
            )
        )
    }
    chain = [revision]
    while (parent := chain[-1].parent) is not None and parent in by_commit:
        if len(chain) > len(by_commit):  # a cycle cannot be hashed into git ids; stop anyway
            break
        chain.append(by_commit[parent])
    return chain


def file_digests(
    session: Session, revision_pks: Sequence[int], paths: Sequence[str]
) -> dict[int, dict[str, str]]:
    """{revision: {path: sha256}} of these paths: enough to tell in which revision a file last
    changed, without loading files as objects (paths asked in batches a query can bind)."""
    digests: dict[int, dict[str, str]] = {pk: {} for pk in revision_pks}
    for start in range(0, len(paths), 500):
        rows = session.execute(
            select(File.revision_pk, File.path, File.sha256).where(
                File.revision_pk.in_(revision_pks), File.path.in_(paths[start : start + 500])
            )
        )
        for revision_pk, path, sha256 in rows:
            digests[revision_pk][path] = sha256
    return digests


def first_mirrored(session: Session, repo_pk: int) -> datetime | None:
    """When hubd recorded the repo's first revision it still holds."""
    return session.scalar(select(func.min(Revision.mirrored_at)).where(Revision.repo_pk == repo_pk))


def children_count(session: Session, repo_id: str) -> int:
    """How many repos the catalog holds whose lineage names ``repo_id`` as their base."""
    count = select(func.count(func.distinct(Revision.repo_pk)))
    return session.scalar(count.where(Revision.base_model == repo_id)) or 0
