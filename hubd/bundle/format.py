"""Air-gap bundles: revisions with their blobs, signatures and catalog rows in one tar.

A bundle is written and read as a stream, never whole in memory::

    hubd-bundle.json                          the index (schemas/bundle-index.schema.json)
    signatures/<org>/<name>/<commit>/<file>   every file of each revision's signature directory
    blobs/<sha256>                            each blob once

``hubd export --since LISTING.json`` leaves out the blobs and revisions the far side's
``hubd listing`` says it holds. This module owns the two formats (the index and the listing,
checked in code as their schemas describe them); hubd.bundle.export writes bundles and
hubd.bundle.importer verifies all of one before anything in it becomes visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from ..catalog.models import Ref, Repo, Revision, RevisionState
from ..context import Context
from ..errors import (
    ConfigError,
    InvalidRequest,
    SignatureInvalid,
)
from ..refs import RepoRef, check_revision, is_commit, safe_relpath
from ..trust.keys import signature_dir, write_atomic
from ..trust.oms import check_key, dsse_open, key_hint

INDEX_NAME = "hubd-bundle.json"
# The index's DSSE envelope, signed by the exporting node's key: the second member. Ref times
# in the index are believed only from an exporter the importing node trusts.
INDEX_SIGNATURE = f"{INDEX_NAME}.sig"
INDEX_PAYLOAD_TYPE = "application/vnd.hubd.bundle-index+json"
BUNDLE_FORMAT = "hubd-bundle"
LISTING_FORMAT = "hubd-listing"
VERSION = 1
INDEX_LIMIT = 64 * 1024 * 1024  # an index (or listing) larger than this is not read
SIGNATURE_LIMIT = 16 * 1024 * 1024  # per file of a signature directory
# Files of a signature directory that travel (write_atomic's hidden temp files do not).
SIGNATURE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_OID = re.compile(r"^[0-9a-f]{40}$")
HOP_KEYS = ("source", "commit", "node", "fetched_at", "client")


@dataclass(frozen=True)
class IndexFile:
    path: str
    size: int
    sha256: str
    git_oid: str | None
    lfs: bool


@dataclass(frozen=True)
class IndexRef:
    name: str
    set_at: datetime  # when the exporting catalog last moved the ref: a replay is older


@dataclass(frozen=True)
class IndexMember:
    """A file of a signature directory as the index declares it."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexRevision:
    repo: str
    commit: str
    source: str
    mirrored_at: datetime
    refs: tuple[IndexRef, ...]
    files: tuple[IndexFile, ...]
    card_data: dict[str, Any]
    gated: str | None
    provenance: tuple[dict[str, Any], ...]
    signatures: tuple[IndexMember, ...]

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit[:12]}"

    @property
    def manifest(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.files}

    def member(self, name: str) -> str:
        return f"signatures/{self.repo}/{self.commit}/{name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "commit": self.commit,
            "source": self.source,
            "mirrored_at": self.mirrored_at.isoformat(),
            "refs": [{"name": r.name, "set_at": r.set_at.isoformat()} for r in self.refs],
            "files": [asdict(f) for f in self.files],
            "card": {"data": self.card_data, "gated": self.gated},
            "provenance": list(self.provenance),
            "signatures": [asdict(s) for s in self.signatures],
        }


@dataclass(frozen=True)
class Index:
    created_at: datetime
    node: str
    public_key: str
    key_hint: str
    since: str | None  # the far side's node, for an incremental bundle
    revisions: tuple[IndexRevision, ...]
    blobs: dict[str, int]  # sha256 -> size of every blob member, in bundle order

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "version": VERSION,
            "created_at": self.created_at.isoformat(),
            "node": {"name": self.node, "public_key": self.public_key, "key_hint": self.key_hint},
            "since": self.since,
            "revisions": [r.to_json() for r in self.revisions],
            "blobs": [{"sha256": s, "size": n} for s, n in self.blobs.items()],
        }

    def check_signature(self, index: bytes, signature: bytes, label: str) -> None:
        """The envelope signs exactly ``index`` (these bytes) with the key the index names."""
        try:
            envelope = json.loads(signature)
        except ValueError:
            raise SignatureInvalid(f"{label}: {INDEX_SIGNATURE} is not JSON") from None
        key = check_key(serialization.load_pem_public_key(self.public_key.encode()), "node key")
        signed = dsse_open(envelope, key, INDEX_PAYLOAD_TYPE, f"{label}: {INDEX_SIGNATURE}")
        if signed != index:
            raise SignatureInvalid(f"{label}: {INDEX_SIGNATURE} signs another index")

    def members(self) -> dict[str, int]:
        """Every member after the index, by name, with its declared size."""
        named = {r.member(s.name): s.size for r in self.revisions for s in r.signatures}
        return {**named, **{f"blobs/{sha}": size for sha, size in self.blobs.items()}}


class _Shape:
    """Checks parsed JSON against a schema in code (jsonschema is a test dependency only)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, where: str, why: str) -> NoReturn:
        raise InvalidRequest(f"{self.what}: {where}: {why}", hint="was it written by hubd?")

    def obj(self, value: Any, where: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = set(keys)
        if not isinstance(value, dict):
            self.fail(where, "expected an object")
        if set(value) != wanted:
            odd = sorted(set(value) ^ wanted)
            self.fail(where, f"missing or unexpected keys: {', '.join(odd)}")
        return value

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, "expected an array")
        return value

    def text(self, value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.fail(where, f"not a valid value: {value!r:.80}")
        return value

    def size(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.fail(where, f"not a size: {value!r:.80}")
        return value

    def time(self, value: Any, where: str) -> datetime:
        try:
            parsed = datetime.fromisoformat(self.text(value, where))
        except ValueError:
            self.fail(where, f"not an ISO 8601 time: {value!r:.80}")
        if parsed.tzinfo is None:
            self.fail(where, "a time needs its UTC offset")
        return parsed

    def header(self, data: bytes, kind: str) -> dict[str, Any]:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.fail("document", f"not JSON ({exc})")
        if not isinstance(doc, dict) or doc.get("format") != kind:
            self.fail("format", f"not a {kind} document")
        if doc.get("version") != VERSION:
            self.fail("version", f"version {doc.get('version')!r}; this hubd reads {VERSION}")
        return doc


def _parse_revision(shape: _Shape, raw: Any, where: str) -> IndexRevision:
    keys = ("repo", "commit", "source", "mirrored_at", "refs", "files", "card")
    doc = shape.obj(raw, where, (*keys, "provenance", "signatures"))
    repo = shape.text(doc["repo"], f"{where}.repo")
    if RepoRef.parse(repo).repo_id != repo:
        shape.fail(f"{where}.repo", f"not a repo id: {repo!r}")
    commit = shape.text(doc["commit"], f"{where}.commit", GIT_OID)
    refs = []
    for i, item in enumerate(shape.array(doc["refs"], f"{where}.refs")):
        ref = shape.obj(item, f"{where}.refs[{i}]", ("name", "set_at"))
        name = check_revision(shape.text(ref["name"], f"{where}.refs[{i}].name"))
        if is_commit(name):
            shape.fail(f"{where}.refs[{i}].name", "a ref name cannot be a commit id")
        refs.append(IndexRef(name, shape.time(ref["set_at"], f"{where}.refs[{i}].set_at")))
    files = []
    for i, item in enumerate(shape.array(doc["files"], f"{where}.files")):
        at = f"{where}.files[{i}]"
        entry = shape.obj(item, at, ("path", "size", "sha256", "git_oid", "lfs"))
        oid = entry["git_oid"]
        if not isinstance(entry["lfs"], bool):
            shape.fail(f"{at}.lfs", "expected true or false")
        files.append(
            IndexFile(
                safe_relpath(shape.text(entry["path"], f"{at}.path")),
                shape.size(entry["size"], f"{at}.size"),
                shape.text(entry["sha256"], f"{at}.sha256", SHA256),
                None if oid is None else shape.text(oid, f"{at}.git_oid", GIT_OID),
                entry["lfs"],
            )
        )
    card = shape.obj(doc["card"], f"{where}.card", ("data", "gated"))
    if not isinstance(card["data"], dict):
        shape.fail(f"{where}.card.data", "expected an object")
    if card["gated"] is not None:
        shape.text(card["gated"], f"{where}.card.gated")
    hops = []
    for i, item in enumerate(shape.array(doc["provenance"], f"{where}.provenance")):
        hop = shape.obj(item, f"{where}.provenance[{i}]", ("hop", *HOP_KEYS))
        shape.size(hop["hop"], f"{where}.provenance[{i}].hop")
        for key in HOP_KEYS:
            shape.text(hop[key], f"{where}.provenance[{i}].{key}")
        shape.time(hop["fetched_at"], f"{where}.provenance[{i}].fetched_at")
        hops.append(hop)
    signatures = []
    for i, item in enumerate(shape.array(doc["signatures"], f"{where}.signatures")):
        sig = shape.obj(item, f"{where}.signatures[{i}]", ("name", "size", "sha256"))
        size = shape.size(sig["size"], f"{where}.signatures[{i}].size")
        if size > SIGNATURE_LIMIT:
            shape.fail(f"{where}.signatures[{i}].size", f"larger than {SIGNATURE_LIMIT} bytes")
        signatures.append(
            IndexMember(
                shape.text(sig["name"], f"{where}.signatures[{i}].name", SIGNATURE_NAME),
                size,
                shape.text(sig["sha256"], f"{where}.signatures[{i}].sha256", SHA256),
            )
        )
    for what, names in (
        ("refs", [r.name for r in refs]),
        ("files", [f.path for f in files]),
        ("signatures", [s.name for s in signatures]),
    ):
        if len(set(names)) != len(names):
            shape.fail(f"{where}.{what}", "duplicate names")
    return IndexRevision(
        repo,
        commit,
        shape.text(doc["source"], f"{where}.source"),
        shape.time(doc["mirrored_at"], f"{where}.mirrored_at"),
        tuple(refs),
        tuple(files),
        card["data"],
        card["gated"],
        tuple(hops),
        tuple(signatures),
    )


def parse_index(data: bytes, label: str) -> Index:
    """The index of a bundle, checked as schemas/bundle-index.schema.json describes it."""
    shape = _Shape(f"{label}: bundle index")
    keys = ("format", "version", "created_at", "node", "since", "revisions", "blobs")
    doc = shape.obj(shape.header(data, BUNDLE_FORMAT), "document", keys)
    node = shape.obj(doc["node"], "node", ("name", "public_key", "key_hint"))
    revisions = tuple(
        _parse_revision(shape, raw, f"revisions[{i}]")
        for i, raw in enumerate(shape.array(doc["revisions"], "revisions"))
    )
    blobs: dict[str, int] = {}
    for i, item in enumerate(shape.array(doc["blobs"], "blobs")):
        blob = shape.obj(item, f"blobs[{i}]", ("sha256", "size"))
        sha = shape.text(blob["sha256"], f"blobs[{i}].sha256", SHA256)
        if sha in blobs:
            shape.fail(f"blobs[{i}]", f"blob {sha} listed twice")
        blobs[sha] = shape.size(blob["size"], f"blobs[{i}].size")
    sizes: dict[str, int] = {}
    seen_refs: set[tuple[str, str]] = set()
    for i, rev in enumerate(revisions):
        for ref in rev.refs:
            if (rev.repo, ref.name) in seen_refs:
                shape.fail(f"revisions[{i}].refs", f"{rev.repo} ref {ref.name} set twice")
            seen_refs.add((rev.repo, ref.name))
        for f in rev.files:
            if (
                sizes.setdefault(f.sha256, f.size) != f.size
                or blobs.get(f.sha256, f.size) != f.size
            ):
                shape.fail(f"revisions[{i}].files", f"{f.path}: sizes of blob {f.sha256} differ")
    if len({(r.repo, r.commit) for r in revisions}) != len(revisions):
        shape.fail("revisions", "a revision is listed twice")
    if unused := sorted(set(blobs) - set(sizes)):
        shape.fail("blobs", f"blob {unused[0]} belongs to no file")
    since = doc["since"]
    hint = shape.text(node["key_hint"], "node.key_hint", SHA256)
    try:
        key = check_key(serialization.load_pem_public_key(node["public_key"].encode()), "key")
    except (ValueError, AttributeError, ConfigError):
        shape.fail("node.public_key", "not an ECDSA P-256/P-384 public key PEM")
    if key_hint(key) != hint:
        shape.fail("node.key_hint", "is not the hint of node.public_key")
    return Index(
        shape.time(doc["created_at"], "created_at"),
        shape.text(node["name"], "node.name"),
        shape.text(node["public_key"], "node.public_key"),
        hint,
        None if since is None else shape.text(since, "since"),
        revisions,
        blobs,
    )


# ---------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class Listing:
    """What a far-side node holds: ``hubd listing`` there, ``--since`` here."""

    node: str
    revisions: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]  # refs, signatures
    blobs: frozenset[str]


def listing(ctx: Context) -> dict[str, Any]:
    """This node's verified revisions and every blob it holds (schemas/listing.schema.json)."""
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
    return {
        "format": LISTING_FORMAT,
        "version": VERSION,
        "node": ctx.settings.node_name,
        "created_at": datetime.now(UTC).isoformat(),
        "revisions": [
            {
                "repo": repo,
                "commit": commit,
                "refs": refs,
                "signatures": signature_names(signature_dir(ctx, repo, commit)),
            }
            for repo, commit, refs in revisions
        ],
        "blobs": [digest for digest, _ in ctx.store.iter_blobs()],  # only digest-named blobs
    }


def signature_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if SIGNATURE_NAME.match(p.name) and p.is_file() and not p.is_symlink()
    )


def write_listing(ctx: Context, path: Path) -> dict[str, Any]:
    doc = listing(ctx)
    write_atomic(path, json.dumps(doc, indent=1).encode())
    return doc


def read_listing(path: Path) -> Listing:
    try:
        if path.stat().st_size > INDEX_LIMIT:
            raise InvalidRequest(f"{path}: larger than {INDEX_LIMIT} bytes; not a listing")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    shape = _Shape(f"{path}: listing")
    doc = shape.obj(
        shape.header(data, LISTING_FORMAT),
        "document",
        ("format", "version", "node", "created_at", "revisions", "blobs"),
    )
    shape.time(doc["created_at"], "created_at")
    revisions = {}
    for i, item in enumerate(shape.array(doc["revisions"], "revisions")):
        rev = shape.obj(item, f"revisions[{i}]", ("repo", "commit", "refs", "signatures"))
        refs = [shape.text(r, f"revisions[{i}].refs") for r in shape.array(rev["refs"], "refs")]
        sigs = [
            shape.text(s, f"revisions[{i}].signatures")
            for s in shape.array(rev["signatures"], "signatures")
        ]
        key = (
            shape.text(rev["repo"], f"revisions[{i}].repo"),
            shape.text(rev["commit"], f"revisions[{i}].commit", GIT_OID),
        )
        revisions[key] = (frozenset(refs), frozenset(sigs))
    blobs = frozenset(shape.text(b, "blobs", SHA256) for b in shape.array(doc["blobs"], "blobs"))
    return Listing(shape.text(doc["node"], "node"), revisions, blobs)
