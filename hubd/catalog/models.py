"""Catalog tables (SQLAlchemy 2.x typed models). Schema changes go through alembic migrations."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores no zone and returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RevisionState(StrEnum):
    """Whether a revision's files were all checked against their digests.

    ``pending``: a pull-through holds some of its files (each verified) and not yet all; it is
    never served or listed as verified, and `hubd mirror` (or clients fetching the rest)
    completes it.
    """

    VERIFIED = "verified"
    FAILED = "failed"
    PENDING = "pending"


class RefKind(StrEnum):
    """A ref is a branch (moves with commits) or a tag (names one commit)."""

    BRANCH = "branch"
    TAG = "tag"


class JobState(StrEnum):
    """Where a queued mirror is: waiting, claimed by a worker, or finished either way."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _state_column(states: type[StrEnum], length: int = 20) -> Enum:
    """The value in a VARCHAR(length), as the migrations create it: no native type, no CHECK."""
    return Enum(
        states,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[Mapping[Any, Any]] = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        datetime: UTCDateTime,
        RevisionState: _state_column(RevisionState),
        JobState: _state_column(JobState),
        RefKind: _state_column(RefKind, length=10),
    }


class Repo(Base):
    """A repository as hubd knows it, whatever the source."""

    __tablename__ = "repos"

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="model")  # model | adapter
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    revisions: Mapped[list[Revision]] = relationship(
        back_populates="repo", cascade="all, delete-orphan", order_by="Revision.mirrored_at"
    )
    refs: Mapped[list[Ref]] = relationship(back_populates="repo", cascade="all, delete-orphan")


class Revision(Base):
    """One commit of a repo held (fully or by an include filter) in the store."""

    __tablename__ = "revisions"
    __table_args__ = (
        UniqueConstraint("repo_pk", "commit"),
        Index("ix_revisions_repo_latest", "repo_pk", "mirrored_at"),  # `hubd ls`: the latest
        # GET /api/models by time, over all repos or one org's (keyset pages).
        Index("ix_revisions_state_time", "state", "mirrored_at", "id"),
        Index("ix_revisions_repo_state_time", "repo_pk", "state", "mirrored_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_pk: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    commit: Mapped[str] = mapped_column(String(40))
    state: Mapped[RevisionState] = mapped_column(default=RevisionState.VERIFIED)
    mirrored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_endpoint: Mapped[str] = mapped_column(String(500))
    is_adapter: Mapped[bool] = mapped_column(Boolean, default=False)
    base_model: Mapped[str | None] = mapped_column(String(200), index=True)
    # A commit pushed to hubd (the Hub's write API): its git parent, message and author.
    parent: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))

    repo: Mapped[Repo] = relationship(back_populates="revisions")
    files: Mapped[list[File]] = relationship(
        back_populates="revision", cascade="all, delete-orphan", order_by="File.path"
    )
    card: Mapped[ModelCard | None] = relationship(
        back_populates="revision", cascade="all, delete-orphan"
    )
    provenance: Mapped[list[Provenance]] = relationship(
        back_populates="revision", cascade="all, delete-orphan", order_by="Provenance.hop"
    )
    hub_tags: Mapped[list[RevisionTag]] = relationship(cascade="all, delete-orphan")


class Ref(Base):
    """A branch or tag and the commit it pointed at when last mirrored."""

    __tablename__ = "refs"
    __table_args__ = (UniqueConstraint("repo_pk", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_pk: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    commit: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # RefKind as the source's refs API said at mirror time; None where it was not asked.
    kind: Mapped[RefKind | None] = mapped_column(default=None)

    repo: Mapped[Repo] = relationship(back_populates="refs")


class RefLog(Base):
    """A ref pointing at a commit, once per move, as hubd recorded it: a ref's history for
    ``commits/{ref}`` (a mirror keeps no git parents)."""

    __tablename__ = "ref_log"
    __table_args__ = (Index("ix_ref_log_repo_name", "repo_pk", "name", "commit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_pk: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    commit: Mapped[str] = mapped_column(String(40))
    logged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """Content in the store, by sha256; shared across repos and revisions."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class File(Base):
    """A path in a revision and the blob it holds, with the digests the source declared."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("revision_pk", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_pk: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(1000))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    git_oid: Mapped[str | None] = mapped_column(String(40))
    lfs: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(500))  # endpoint that served the bytes

    revision: Mapped[Revision] = relationship(back_populates="files")


class ModelCard(Base):
    """The fields of the model card's metadata that audits and lineage need, plus its text."""

    __tablename__ = "model_cards"

    revision_pk: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True
    )
    # Card fields are free text of any length: PostgreSQL enforces VARCHAR limits, SQLite not.
    license: Mapped[str | None] = mapped_column(Text, index=True)
    license_name: Mapped[str | None] = mapped_column(Text)
    license_link: Mapped[str | None] = mapped_column(Text)
    base_model: Mapped[list[str]] = mapped_column(default=list)
    base_model_relation: Mapped[str | None] = mapped_column(Text)
    datasets: Mapped[list[str]] = mapped_column(default=list)
    tags: Mapped[list[str]] = mapped_column(default=list)
    pipeline_tag: Mapped[str | None] = mapped_column(Text)
    library_name: Mapped[str | None] = mapped_column(Text)
    language: Mapped[list[str]] = mapped_column(default=list)
    gated: Mapped[str | None] = mapped_column(String(20))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str | None] = mapped_column(Text)

    revision: Mapped[Revision] = relationship(back_populates="card")

    def tags_for_hub(self) -> list[str]:
        """The Hub's tags from the card: its tags, library, task, languages, then key:value.

        Tags longer than TAG_MAX are left out (the Hub has none; revision_tags indexes them).
        """
        plain = [*self.tags, *([self.library_name] if self.library_name else [])]
        plain += [self.pipeline_tag] if self.pipeline_tag else []
        plain += self.language
        keyed = [f"base_model:{b}" for b in self.base_model]
        keyed += [f"dataset:{d}" for d in self.datasets]
        keyed += [f"license:{self.license}"] if self.license else []
        wanted = (t for t in plain + keyed if isinstance(t, str) and 0 < len(t) <= TAG_MAX)
        return list(dict.fromkeys(wanted))


TAG_MAX = 200


class RevisionTag(Base):
    """One of a revision's Hub tags (ModelCard.tags_for_hub): `GET /api/models?filter=` seeks
    them by (tag, revision) instead of reading every card, and lists them without its JSON."""

    __tablename__ = "revision_tags"

    tag: Mapped[str] = mapped_column(String(TAG_MAX), primary_key=True)
    revision_pk: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)  # the Hub's order of the tags


class Provenance(Base):
    """One hop in a revision's chain of custody: who served it to whom, from which commit, when."""

    __tablename__ = "provenance"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision_pk: Mapped[int] = mapped_column(
        ForeignKey("revisions.id", ondelete="CASCADE"), index=True
    )
    hop: Mapped[int] = mapped_column(Integer, default=0)
    source_url: Mapped[str] = mapped_column(String(1000))
    commit: Mapped[str] = mapped_column(String(40))
    node: Mapped[str] = mapped_column(String(200))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    client: Mapped[str] = mapped_column(String(100))

    revision: Mapped[Revision] = relationship(back_populates="provenance")


class Peer(Base):
    """Another hubd node (or any HF endpoint) to mirror from, tried in ``position`` order.

    Only where its token lives is recorded (a file or an environment variable), never the token.
    """

    __tablename__ = "peers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    token_file: Mapped[str | None] = mapped_column(String(1000))
    token_env: Mapped[str | None] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token for the HTTP API; only its sha256 is kept, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(10))  # read | write
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    repos: Mapped[list[str] | None] = mapped_column(JSON)  # globs it may write; None: any


class Job(Base):
    """A queued mirror, persisted so that a restarted daemon resumes it."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(300))  # org/name[@revision]
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(default=JobState.QUEUED, index=True)
    node: Mapped[str | None] = mapped_column(String(200))  # who runs or ran it
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Node(Base):
    """A hubd daemon sharing this catalog: where its Hub API answers, when it last started.

    Rows also appear for nodes that record revisions without running a daemon; they have no
    ``url`` until a daemon of that name registers, and nobody fetches from them.
    """

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str | None] = mapped_column(String(500))
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobLocation(Base):
    """This node's store holds this blob: where a node that lacks it fetches it from."""

    __tablename__ = "blob_locations"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(
        ForeignKey("nodes.name", ondelete="CASCADE"), primary_key=True, index=True
    )


class Watch(Base):
    """A repo the daemon keeps in sync by queueing a mirror every ``every_seconds``."""

    __tablename__ = "watches"

    id: Mapped[int] = mapped_column(primary_key=True)
    repo: Mapped[str] = mapped_column(String(300), unique=True)
    every_seconds: Mapped[int] = mapped_column(Integer)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_job_id: Mapped[int | None] = mapped_column(Integer)


class SignatureVerdict(Base):
    """A signature ``node`` verified: the bundle (sha256 of its bytes) by the key with OMS hint
    ``key_hint`` over a revision's files (sha256 of their path/digest list).

    Audits with a signature rule would otherwise verify every bundle again (hubd.audit.facts).
    Each node reads and writes only its own rows; a row counts only while its key is trusted,
    so taking a key out of the trust store (or replacing it) is what invalidates its verdicts.
    """

    __tablename__ = "signature_verdicts"

    node: Mapped[str] = mapped_column(String(200), primary_key=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hint: Mapped[str] = mapped_column(String(64), primary_key=True)
    files_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProxyRefusal(Base):
    """A pull-through request the proxy refused before any byte, and the rule that refused it."""

    __tablename__ = "proxy_refusals"
    __table_args__ = (Index("ix_proxy_refusals_time", "refused_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(200))
    commit: Mapped[str | None] = mapped_column(String(40))
    rule: Mapped[str] = mapped_column(String(20))  # allow, deny, audit, trust, size
    message: Mapped[str] = mapped_column(Text)
    node: Mapped[str] = mapped_column(String(200))
    refused_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FleetSecret(Base):
    """A random key every daemon on this catalog shares, by purpose (``upload-url``: the HMAC
    key of the LFS upload URLs, so a URL one daemon hands out works on any behind one address).

    Whoever can read the catalog can read it; they could write revisions anyway.
    """

    __tablename__ = "fleet_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))  # hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
