"""`hubd export -o`: revisions, their signature directories and blobs as one streamed tar.

Every blob is re-hashed as it is written: a damaged blob fails the export, and a bundle written
to a file appears only complete (temp file, then rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .bundle import (
    INDEX_NAME,
    INDEX_PAYLOAD_TYPE,
    INDEX_SIGNATURE,
    SIGNATURE_LIMIT,
    Index,
    IndexFile,
    IndexMember,
    IndexRef,
    IndexRevision,
    Listing,
    signature_names,
)
from .catalog.models import Revision
from .catalog.queries import require_revision
from .catalog.views import provenance_hop
from .context import Context
from .errors import HashMismatch, RevisionNotFound, SizeMismatch, StoreError
from .refs import RepoRef
from .signatures import node_signature
from .verify.hashes import CHUNK
from .verify.keys import node_key, signature_dir, trusted_signers
from .verify.signing import dsse_envelope, key_hint, public_pem
from .verify.trust import check_bundle


@dataclass
class ExportResult:
    bundle: str
    node: str
    since: str | None
    revisions: list[dict[str, Any]]
    skipped_revisions: list[dict[str, str]] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    skipped_blobs: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Plan:
    index: Index
    signatures: dict[str, bytes]  # member name -> bytes, checked when collected
    skipped: list[dict[str, str]]
    skipped_blobs: int


def _collect(ctx: Context, ref: RepoRef) -> tuple[IndexRevision, dict[str, bytes]]:
    """One verified revision as the index describes it, and its signature directory."""
    with ctx.catalog() as session:
        revision: Revision = require_revision(session, ref.repo_id, ref.revision)
        if revision.state != "verified":
            raise RevisionNotFound(f"{ref} is {revision.state}, not verified; cannot export it")
        commit = revision.commit
        card = revision.card
        rev = IndexRevision(
            ref.repo_id,
            commit,
            revision.source_endpoint,
            revision.mirrored_at,
            tuple(
                IndexRef(r.name, r.updated_at)
                for r in sorted(revision.repo.refs, key=lambda r: r.name)
                if r.commit == commit
            ),
            tuple(
                IndexFile(f.path, f.size, f.sha256, f.git_oid, f.lfs)
                for f in sorted(revision.files, key=lambda f: f.path)
            ),
            dict(card.data) if card else {},
            card.gated if card else None,
            tuple(provenance_hop(p) for p in revision.provenance),
            (),
        )
    node_signature(ctx, ref, commit)
    signers = trusted_signers(ctx)
    contents: dict[str, bytes] = {}
    for name in signature_names(signature_dir(ctx, ref.repo_id, commit)):
        path = signature_dir(ctx, ref.repo_id, commit) / name
        try:
            if path.stat().st_size > SIGNATURE_LIMIT:
                raise StoreError(f"{path}: larger than {SIGNATURE_LIMIT} bytes; not exported")
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        if name.endswith(".sig"):  # a trusted signature that fails would be refused over there
            check_bundle(data, rev.manifest, signers, f"{rev.label}: signature {name[:12]}")
        contents[name] = data
    sigs = tuple(IndexMember(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in contents.items())
    rev = replace(rev, signatures=sigs)
    return rev, {rev.member(n): d for n, d in contents.items()}


def plan_bundle(ctx: Context, refs: Sequence[RepoRef], since: Listing | None = None) -> _Plan:
    """What a bundle of ``refs`` carries, leaving out what ``since`` says the far side has."""
    revisions: dict[tuple[str, str], IndexRevision] = {}
    members: dict[str, bytes] = {}
    skipped = []
    for ref in refs:
        rev, contents = _collect(ctx, ref)
        theirs = since.revisions.get((rev.repo, rev.commit)) if since else None
        if (
            theirs is not None
            and {r.name for r in rev.refs} <= theirs[0]
            and {s.name for s in rev.signatures} <= theirs[1]
        ):
            skipped.append({"repo": rev.repo, "commit": rev.commit})
            continue
        revisions.setdefault((rev.repo, rev.commit), rev)
        members.update(contents)
    blobs: dict[str, int] = {}
    held = since.blobs if since else frozenset()
    skipped_blobs = set()
    for rev in revisions.values():
        for f in rev.files:
            if f.sha256 in held:
                skipped_blobs.add(f.sha256)
            else:
                blobs.setdefault(f.sha256, f.size)
    key = node_key(ctx).public_key()
    index = Index(
        datetime.now(UTC),
        ctx.settings.node_name,
        public_pem(key).decode(),
        key_hint(key),
        since.node if since else None,
        tuple(revisions.values()),
        blobs,
    )
    return _Plan(index, members, skipped, len(skipped_blobs))


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    return info


class _HashingReader:
    """Hands a blob to tarfile, hashing it on the way: a damaged blob fails the export."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.fh.read(size)
        self.digest.update(chunk)
        return chunk


def _add_blob(ctx: Context, tar: tarfile.TarFile, sha256: str, size: int, mtime: int) -> None:
    path = ctx.store.blob_path(sha256)
    try:
        with open(path, "rb", buffering=CHUNK) as fh:
            actual = os.fstat(fh.fileno()).st_size
            if actual != size:
                raise SizeMismatch(
                    f"stored blob {sha256} is damaged ({actual} bytes, expected {size})",
                    hint="`hubd verify` finds and names the revision; re-mirror it",
                )
            reader = _HashingReader(fh)
            tar.addfile(_member(f"blobs/{sha256}", size, mtime), reader)
    except FileNotFoundError:
        raise StoreError(
            f"blob {sha256} is missing from the store", hint="`hubd verify` names the revision"
        ) from None
    if reader.digest.hexdigest() != sha256:
        raise HashMismatch(
            f"stored blob {sha256} is damaged (sha256 {reader.digest.hexdigest()})",
            hint="`hubd verify` finds and names the revision; re-mirror it",
        )


def write_bundle(ctx: Context, plan: _Plan, out: IO[bytes]) -> int:
    """Stream the bundle to ``out``: index, its signature, signature files, then every blob.

    Returns the blob bytes written. On failure ``out`` holds a bundle without its end, which
    import refuses as truncated.
    """
    mtime = int(plan.index.created_at.timestamp())
    index = json.dumps(plan.index.to_json(), indent=1).encode()
    with tarfile.open(fileobj=out, mode="w|", bufsize=CHUNK, format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(INDEX_NAME, len(index), mtime), io.BytesIO(index))
        envelope = dsse_envelope(node_key(ctx), index, INDEX_PAYLOAD_TYPE)
        signature = json.dumps(envelope, indent=1).encode()
        tar.addfile(_member(INDEX_SIGNATURE, len(signature), mtime), io.BytesIO(signature))
        for name, data in plan.signatures.items():
            tar.addfile(_member(name, len(data), mtime), io.BytesIO(data))
        for sha256, size in plan.index.blobs.items():
            _add_blob(ctx, tar, sha256, size, mtime)
    return sum(plan.index.blobs.values())


def export_bundle(
    ctx: Context, refs: Sequence[RepoRef], to: Path | IO[bytes], since: Listing | None = None
) -> ExportResult:
    """Write a bundle of ``refs`` to the file ``to`` (complete or absent) or a binary stream."""
    plan = plan_bundle(ctx, refs, since)
    if isinstance(to, Path):
        tmp = to.with_name(f".{to.name}.{os.getpid()}.partial")
        try:
            with open(tmp, "wb") as fh:
                written = write_bundle(ctx, plan, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, to)
        except OSError as exc:
            raise StoreError(f"cannot write {to}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    else:
        written = write_bundle(ctx, plan, to)
    return ExportResult(
        bundle=str(to) if isinstance(to, Path) else "-",
        node=plan.index.node,
        since=plan.index.since,
        revisions=[
            {"repo": r.repo, "commit": r.commit, "refs": [x.name for x in r.refs]}
            for r in plan.index.revisions
        ],
        skipped_revisions=plan.skipped,
        blobs=len(plan.index.blobs),
        bytes=written,
        skipped_blobs=plan.skipped_blobs,
    )
