"""Air-gap bundles: revisions with their blobs, signatures and catalog rows in one tar.

A bundle is written and read as a stream, never whole in memory::

    hubd-bundle.json                          the index (schemas/bundle-index.schema.json)
    signatures/<org>/<name>/<commit>/<file>   every file of each revision's signature directory
    blobs/<sha256>                            each blob once

``hubd export --since LISTING.json`` leaves out the blobs and revisions the far side's
``hubd listing`` says it holds. This module owns the two formats as strict pydantic models,
:class:`Index` and :class:`Listing`: hubd writes what it builds with them and reads with them
what a far side sent (the schemas are generated from them); hubd.bundle.export writes bundles
and hubd.bundle.importer verifies all of one before anything in it becomes visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from sqlalchemy import select

from ..catalog.models import Ref, Repo, Revision, RevisionState
from ..context import Context
from ..errors import (
    ConfigError,
    HubdError,
    InvalidReference,
    InvalidRequest,
    SignatureInvalid,
    UnsafePath,
)
from ..refs import (
    check_file_set,
    check_revision,
    is_commit,
)
from ..sources.modelinfo import CARD_DEPTH, json_depth
from ..trust.keys import signature_dir, write_atomic
from ..trust.oms import check_key, dsse_open, key_hint
from ..validation import (
    Commit,
    FilePath,
    GitOid,
    RepoId,
    Sha256,
    Size,
    location,
    matching,
    pattern,
    refusal,
)

INDEX_NAME = "hubd-bundle.json"
# The index's DSSE envelope, signed by the exporting node's key: the second member. Ref times
# in the index are believed only from an exporter the importing node trusts.
INDEX_SIGNATURE = f"{INDEX_NAME}.sig"
INDEX_PAYLOAD_TYPE = "application/vnd.hubd.bundle-index+json"
VERSION: Final = 1
INDEX_LIMIT = 64 * 1024 * 1024  # an index (or listing) larger than this is not read
SIGNATURE_LIMIT = 16 * 1024 * 1024  # per file of a signature directory
# Files of a signature directory that travel (write_atomic's hidden temp files do not).
SIGNATURE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_HINT = "was it written by hubd?"


def _ref_name(value: str) -> str:
    try:
        check_revision(value)
    except InvalidReference as exc:
        raise refusal(exc.message) from None
    if is_commit(value):
        raise refusal("a ref name cannot be a commit id")
    return value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # True == 1: a Literal[1] alone takes it
        raise refusal("a version is a number, not true or false")
    return value


RefName = Annotated[
    StrictStr,
    AfterValidator(_ref_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$",
            "not": {"anyOf": [{"pattern": "^[0-9a-f]{40}$"}, {"pattern": r"\.\.|//"}]},
        }
    ),
]
SignatureName = Annotated[
    StrictStr,
    matching(lambda name: bool(SIGNATURE_NAME.fullmatch(name)), "a signature file name"),
    pattern("^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$"),
]
Version = Annotated[Literal[1], BeforeValidator(_not_bool)]


def _invalid(exc: ValidationError, what: str) -> HubdError:
    """The first problem as one line naming its field (``revisions[1].files[0].sha256: …``).

    Missing and unexpected keys of one object are named together. A file name that is not a
    plain relative path is an UnsafePath (as a source's would be), anything else InvalidRequest.
    """
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    keys = ("missing", "extra_forbidden")
    if first["type"] in keys:
        parent = first["loc"][:-1]
        odd = sorted(
            str(e["loc"][-1]) for e in errors if e["type"] in keys and e["loc"][:-1] == parent
        )
        where, why = location(parent) or "document", f"missing or unexpected keys: {', '.join(odd)}"
    else:
        where, why = location(first["loc"]), first["msg"]
    error = UnsafePath if first["type"] == "unsafe_path" else InvalidRequest
    return error(f"{what}: {where}: {why}" if where else f"{what}: {why}", hint=_HINT)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------ index


class IndexNode(_Model):
    """The exporting node: trust its key (`hubd trust add`) to accept what it signed."""

    name: StrictStr
    public_key: StrictStr = Field(json_schema_extra={"pattern": "^-----BEGIN PUBLIC KEY-----"})
    key_hint: Sha256 = Field(description="sha256 of public_key (OMS publicKey.hint)")

    @field_validator("public_key")
    @classmethod
    def _pem(cls, value: str) -> str:
        _public_key(value)
        return value

    @model_validator(mode="after")
    def _hint(self) -> IndexNode:
        if key_hint(_public_key(self.public_key)) != self.key_hint:
            raise refusal("key_hint is not the hint of public_key")
        return self


def _public_key(pem: str) -> ec.EllipticCurvePublicKey:
    try:
        return check_key(serialization.load_pem_public_key(pem.encode()), "key")
    except (ValueError, UnsupportedAlgorithm, ConfigError):
        raise refusal("not an ECDSA P-256/P-384 public key PEM") from None


class IndexRef(_Model):
    """A branch or tag pointing at the revision's commit."""

    name: RefName
    set_at: AwareDatetime = Field(description="when the exporting catalog last moved the ref")


class IndexFile(_Model):
    path: FilePath = Field(
        description="a plain relative POSIX path: no '..' or '.' segment, not absolute, "
        "no backslash or NUL"
    )
    size: Size
    sha256: Sha256
    git_oid: GitOid | None = Field(
        description="git blob sha1 (non-LFS: checked on import), or of the LFS pointer"
    )
    lfs: StrictBool


class IndexCard(_Model):
    """What re-recording the card needs when the revision has no README.md."""

    data: dict[str, Any]
    gated: StrictStr | None

    @field_validator("data")
    @classmethod
    def _shallow(cls, value: dict[str, Any]) -> dict[str, Any]:
        if json_depth(value) > CARD_DEPTH:
            raise refusal(f"nested deeper than {CARD_DEPTH} levels")
        return value


class Hop(_Model):
    """One hop of the exporting catalog's chain of custody (as in provenance.schema.json)."""

    hop: Size
    source: StrictStr
    commit: StrictStr
    node: StrictStr
    fetched_at: AwareDatetime
    client: StrictStr


class IndexMember(_Model):
    """A file of a signature directory as the index declares it."""

    name: SignatureName
    size: Annotated[StrictInt, Field(ge=0, le=SIGNATURE_LIMIT)]
    sha256: Sha256


def _once(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise refusal(f"names {name!r} twice")
        seen.add(name)


class IndexRevision(_Model):
    """A revision with its catalog rows; its blobs are members unless the far side has them."""

    repo: RepoId
    commit: Commit
    source: StrictStr = Field(description="the endpoint the exporting node got the revision from")
    mirrored_at: AwareDatetime
    refs: tuple[IndexRef, ...] = Field(
        description="branches and tags pointing at this commit; set_at is when the exporting "
        "catalog last moved the ref, so an import refuses to move a ref back to an older commit "
        "(a replayed bundle)"
    )
    files: tuple[IndexFile, ...]
    card: IndexCard
    provenance: tuple[Hop, ...] = Field(
        description="the exporting catalog's chain of custody; the importing node appends its "
        "own hop"
    )
    signatures: tuple[IndexMember, ...] = Field(
        description="every file of the revision's signature directory: <key-hint>.sig OMS "
        "bundles (oms-bundle.schema.json) and provenance.intoto.jsonl "
        "(slsa-provenance.schema.json)"
    )

    @field_validator("refs")
    @classmethod
    def _refs_once(cls, value: tuple[IndexRef, ...]) -> tuple[IndexRef, ...]:
        _once(r.name for r in value)
        return value

    @field_validator("files")
    @classmethod
    def _file_set(cls, value: tuple[IndexFile, ...]) -> tuple[IndexFile, ...]:
        try:
            check_file_set(f.path for f in value)
        except UnsafePath as exc:
            raise refusal(exc.message, "unsafe_path") from None
        return value

    @field_validator("signatures")
    @classmethod
    def _signatures_once(cls, value: tuple[IndexMember, ...]) -> tuple[IndexMember, ...]:
        _once(s.name for s in value)
        return value

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit[:12]}"

    @property
    def manifest(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.files}

    def member(self, name: str) -> str:
        return f"signatures/{self.repo}/{self.commit}/{name}"


class IndexBlob(_Model):
    sha256: Sha256
    size: Size


class Index(_Model):
    """First member of the bundle's tar.

    Then come the files of each revision's signature directory as
    signatures/<org>/<name>/<commit>/<name>, then each blob once as blobs/<sha256>: every member
    after the index is named here with its size, and nothing else may be in the tar. `hubd
    import` validates the index with this model (hubd/bundle/format.py Index) before it reads a
    blob.
    """

    model_config = ConfigDict(
        title="hubd-bundle.json: the index of an air-gap bundle (`hubd export -o`, `hubd import`)"
    )

    format: Literal["hubd-bundle"]
    version: Version
    created_at: AwareDatetime
    node: IndexNode
    since: StrictStr | None = Field(
        description="for an incremental bundle (`--since LISTING.json`), the node whose listing "
        "left blobs and revisions out"
    )
    revisions: tuple[IndexRevision, ...]
    blobs: tuple[IndexBlob, ...] = Field(
        description="the blob members, in bundle order; a file's blob that is not here must "
        "already be in the importing store"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Index:
        """Each blob, revision and ref once; one size per blob; no blob that no file has."""
        blobs: dict[str, int] = {}
        for i, blob in enumerate(self.blobs):
            if blob.sha256 in blobs:
                raise refusal(f"blobs[{i}]: blob {blob.sha256} listed twice")
            blobs[blob.sha256] = blob.size
        sizes: dict[str, int] = {}
        refs: set[tuple[str, str]] = set()
        for i, rev in enumerate(self.revisions):
            for ref in rev.refs:
                if (rev.repo, ref.name) in refs:
                    raise refusal(f"revisions[{i}].refs: {rev.repo} ref {ref.name} set twice")
                refs.add((rev.repo, ref.name))
            for f in rev.files:
                if (
                    sizes.setdefault(f.sha256, f.size) != f.size
                    or blobs.get(f.sha256, f.size) != f.size
                ):
                    raise refusal(
                        f"revisions[{i}].files: {f.path}: sizes of blob {f.sha256} differ"
                    )
        if len({(r.repo, r.commit) for r in self.revisions}) != len(self.revisions):
            raise refusal("revisions: a revision is listed twice")
        if unused := sorted(set(blobs) - set(sizes)):
            raise refusal(f"blobs: blob {unused[0]} belongs to no file")
        return self

    @classmethod
    def parse(cls, data: bytes, label: str) -> Index:
        """The bundle's index, or InvalidRequest (UnsafePath for a file name) naming the field."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise _invalid(exc, f"{label}: bundle index") from None

    @property
    def blob_sizes(self) -> dict[str, int]:
        """sha256 -> size of every blob member, in bundle order."""
        return {b.sha256: b.size for b in self.blobs}

    def check_signature(self, index: bytes, signature: bytes, label: str) -> None:
        """The envelope signs exactly ``index`` (these bytes) with the key the index names."""
        try:
            envelope = json.loads(signature)
        except ValueError:
            raise SignatureInvalid(f"{label}: {INDEX_SIGNATURE} is not JSON") from None
        key = check_key(
            serialization.load_pem_public_key(self.node.public_key.encode()), "node key"
        )
        signed = dsse_open(envelope, key, INDEX_PAYLOAD_TYPE, f"{label}: {INDEX_SIGNATURE}")
        if signed != index:
            raise SignatureInvalid(f"{label}: {INDEX_SIGNATURE} signs another index")

    def members(self) -> dict[str, int]:
        """Every member after the index, by name, with its declared size."""
        named = {r.member(s.name): s.size for r in self.revisions for s in r.signatures}
        return {**named, **{f"blobs/{b.sha256}": b.size for b in self.blobs}}


# ---------------------------------------------------------------------------------- listing


class ListedRevision(_Model):
    repo: RepoId
    commit: Commit
    refs: tuple[RefName, ...] = Field(description="refs pointing at this commit")
    signatures: tuple[SignatureName, ...] = Field(
        description="file names in its signature directory"
    )


class Listing(_Model):
    """What a node holds: ``hubd listing`` there, ``--since`` here.

    An exporting node leaves out every blob named here, and a whole revision when the listing
    has it with all the bundle's refs and signature files.
    """

    model_config = ConfigDict(
        title="`hubd listing -o LISTING.json`: what a node holds, for `hubd export --since` "
        "across an air gap"
    )

    format: Literal["hubd-listing"]
    version: Version
    node: StrictStr
    created_at: AwareDatetime
    revisions: tuple[ListedRevision, ...] = Field(description="verified revisions in the catalog")
    blobs: tuple[Sha256, ...] = Field(
        description="sha256 of every blob in the store", json_schema_extra={"uniqueItems": True}
    )

    @field_validator("blobs")
    @classmethod
    def _blobs_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _once(value)
        return value

    @classmethod
    def read(cls, path: Path) -> Listing:
        """A listing file, or InvalidRequest naming what is wrong with it."""
        try:
            if path.stat().st_size > INDEX_LIMIT:
                raise InvalidRequest(f"{path}: larger than {INDEX_LIMIT} bytes; not a listing")
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise _invalid(exc, f"{path}: listing") from None

    def holds(self, rev: IndexRevision) -> bool:
        """The far side has ``rev`` with all its refs and signature files: it need not travel."""
        return any(
            (r.repo, r.commit) == (rev.repo, rev.commit)
            and {x.name for x in rev.refs} <= set(r.refs)
            and {s.name for s in rev.signatures} <= set(r.signatures)
            for r in self.revisions
        )


def listing(ctx: Context) -> Listing:
    """This node's verified revisions and every blob it holds."""
    with ctx.catalog() as session:
        refs: dict[tuple[str, str], list[str]] = {}
        for repo_id, commit, name in session.execute(
            select(Repo.repo_id, Ref.commit, Ref.name).join(Ref.repo).order_by(Ref.name)
        ):
            refs.setdefault((repo_id, commit), []).append(name)
        revisions = [
            (repo_id, commit, refs.get((repo_id, commit), []))
            for repo_id, commit in session.execute(
                select(Repo.repo_id, Revision.commit)
                .join(Revision.repo)
                .where(Revision.state == RevisionState.VERIFIED)
                .order_by(Repo.repo_id, Revision.mirrored_at)
            )
        ]
    return Listing(
        format="hubd-listing",
        version=VERSION,
        node=ctx.settings.node_name,
        created_at=datetime.now(UTC),
        revisions=tuple(
            ListedRevision(
                repo=repo,
                commit=commit,
                refs=tuple(names),
                signatures=signature_names(signature_dir(ctx, repo, commit)),
            )
            for repo, commit, names in revisions
        ),
        blobs=tuple(digest for digest, _ in ctx.store.iter_blobs()),  # only digest-named blobs
    )


def signature_names(directory: Path) -> tuple[str, ...]:
    if not directory.is_dir():
        return ()
    return tuple(
        sorted(
            p.name
            for p in directory.iterdir()
            if SIGNATURE_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()
        )
    )


def write_listing(ctx: Context, path: Path) -> Listing:
    made = listing(ctx)
    write_atomic(path, json.dumps(made.model_dump(mode="json"), indent=1).encode())
    return made
