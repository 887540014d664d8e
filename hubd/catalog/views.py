"""Catalog rows as the pydantic models `hubd ls/show --json` and the HTTP API send.

The models own the shapes: schemas/catalog-repo.schema.json and manifest.schema.json are written
from them (tools/schemas.py), so what hubd prints and what the schema says cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, RootModel

from ..validation import Commit, Sha256, Size
from .models import File, Provenance, Repo, Revision, RevisionState

# As datetime.isoformat() writes it ("+00:00"), not pydantic's "Z": the JSON stays as it was.
Time = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")]
Kind = Literal["model", "adapter"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_View):
    path: str
    size: Size
    sha256: Sha256
    git_oid: str | None
    lfs: bool


class CardView(_View):
    """What the model card declares (its YAML metadata)."""

    license: str | None
    license_name: str | None
    license_link: str | None
    base_model: list[str]
    base_model_relation: str | None
    datasets: list[str]
    tags: list[str]
    pipeline_tag: str | None
    language: list[str]
    gated: str | None


class ProvenanceHop(_View):
    """One hop of a revision's chain of custody: where a node fetched it from, and when."""

    hop: Annotated[int, Field(ge=0)]
    source: str
    commit: str
    node: str
    fetched_at: Time
    client: str


class RevisionDetail(_View):
    commit: Commit
    refs: list[str]
    state: RevisionState
    mirrored_at: Time
    source: str
    is_adapter: bool
    base_model: str | None
    size: Size
    files: list[FileEntry]
    card: CardView | None
    provenance: list[ProvenanceHop]


class RepoSummary(_View):
    """One row of `hubd ls`: the repo and its latest revision."""

    repo: str
    kind: Kind
    revisions: Size
    refs: dict[str, Commit]
    license: str | None
    base_model: str | None
    mirrored_at: Time | None


class RepoDetail(_View):
    """`hubd show --json`: a repo with every revision, its files, card and provenance."""

    repo: str
    kind: Kind
    revisions: list[RevisionDetail]
    refs: dict[str, Commit]
    license: str | None = Field(description="the latest revision's card license")
    base_model: str | None = Field(description="the latest revision's base model")
    mirrored_at: Time | None = Field(description="when the latest revision was mirrored")


class RepoList(_View):
    """`hubd ls --json`: a page of summaries."""

    repos: list[RepoSummary]
    next: str | None = Field(
        description="The repo id to pass as `hubd ls --after` for the next page; null on the "
        "last page."
    )


class CatalogRepo(RootModel[RepoList | RepoDetail]):
    """`hubd ls --json` prints a page of summaries and the cursor of the next page; `hubd show
    --json` one detail."""

    model_config = ConfigDict(title="A repo in the catalog")


class Manifest(_View):
    """A verified revision's files with their sizes and digests, as the catalog recorded them."""

    model_config = ConfigDict(title="GET /api/hubd/models/{org}/{name}/revision/{rev}/manifest")

    repo: str
    commit: Commit
    refs: list[str]
    files: list[FileEntry]


def _refs_by_commit(repo: Repo) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for ref in sorted(repo.refs, key=lambda r: r.name):
        refs.setdefault(ref.commit, []).append(ref.name)
    return refs


def _file(f: File) -> FileEntry:
    return FileEntry(path=f.path, size=f.size, sha256=f.sha256, git_oid=f.git_oid, lfs=f.lfs)


def custody_hop(hop: Provenance) -> ProvenanceHop:
    """A catalog provenance row as one hop of the chain of custody (views, bundle indexes)."""
    return ProvenanceHop(
        hop=hop.hop,
        source=hop.source_url,
        commit=hop.commit,
        node=hop.node,
        fetched_at=hop.fetched_at,
        client=hop.client,
    )


def provenance_hop(hop: Provenance) -> dict[str, Any]:
    """A custody hop as JSON: the provenance and attestations endpoints, bundle indexes."""
    return custody_hop(hop).model_dump(mode="json")


def repo_summary(repo: Repo) -> RepoSummary:
    latest = repo.revisions[-1] if repo.revisions else None
    card = latest.card if latest else None
    return RepoSummary(
        repo=repo.repo_id,
        kind=cast(Kind, repo.kind),  # a plain string column: the model checks it
        revisions=len(repo.revisions),
        refs={ref.name: ref.commit for ref in repo.refs},
        license=card.license if card else None,
        base_model=latest.base_model if latest else None,
        mirrored_at=latest.mirrored_at if latest else None,
    )


def revision_detail(revision: Revision, refs: list[str]) -> RevisionDetail:
    card = revision.card
    return RevisionDetail(
        commit=revision.commit,
        refs=refs,
        state=revision.state,
        mirrored_at=revision.mirrored_at,
        source=revision.source_endpoint,
        is_adapter=revision.is_adapter,
        base_model=revision.base_model,
        size=sum(f.size for f in revision.files),
        files=[_file(f) for f in revision.files],
        card=None if card is None else CardView.model_validate(card, from_attributes=True),
        provenance=[custody_hop(p) for p in revision.provenance],
    )


def repo_detail(repo: Repo) -> RepoDetail:
    refs = _refs_by_commit(repo)
    summary = repo_summary(repo)
    return RepoDetail(
        repo=summary.repo,
        kind=summary.kind,
        revisions=[revision_detail(r, refs.get(r.commit, [])) for r in repo.revisions],
        refs=summary.refs,
        license=summary.license,
        base_model=summary.base_model,
        mirrored_at=summary.mirrored_at,
    )


def manifest(repo_id: str, revision: Revision, refs: list[str]) -> Manifest:
    """The manifest endpoint's answer for a verified revision and its ref names."""
    return Manifest(
        repo=repo_id, commit=revision.commit, refs=refs, files=[_file(f) for f in revision.files]
    )
