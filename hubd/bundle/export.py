"""`hubd export -o`: revisions, their signature directories and blobs as one streamed tar.

Every blob is re-hashed as it is written: a damaged blob fails the export, and a bundle written
to a file appears only complete (temp file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..catalog.models import Revision, RevisionState
from ..catalog.revisions import require_revision
from ..catalog.views import custody_hop
from ..context import Context
from ..errors import HashMismatch, RevisionNotFound, SizeMismatch, StoreError
from ..hashes import CHUNK
from ..ops.sign import node_signature
from ..refs import RepoRef
from ..sources.base import NullProgress, Progress
from ..trust.keys import node_key, signature_dir, trusted_signers
from ..trust.oms import dsse_envelope, key_hint, public_pem
from ..trust.policy import check_bundle
from .format import (
    INDEX_NAME,
    INDEX_PAYLOAD_TYPE,
    INDEX_SIGNATURE,
    SIGNATURE_LIMIT,
    VERSION,
    Hop,
    Index,
    IndexBlob,
    IndexCard,
    IndexFile,
    IndexMember,
    IndexNode,
    IndexRef,
    IndexRevision,
    Listing,
    signature_names,
)


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


def _signature_files(
    ctx: Context, ref: RepoRef, commit: str, manifest: dict[str, str]
) -> dict[str, bytes]:
    """The revision's signature directory by file name; each trusted signature checked."""
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
            label = f"{ref.repo_id}@{commit[:12]}: signature {name[:12]}"
            check_bundle(data, manifest, signers, label)
        contents[name] = data
    return contents


def _collect(ctx: Context, ref: RepoRef) -> tuple[IndexRevision, dict[str, bytes]]:
    """One verified revision as the index describes it, and its signature directory."""
    with ctx.catalog() as session:
        revision: Revision = require_revision(session, ref.repo_id, ref.revision)
        if revision.state != RevisionState.VERIFIED:
            raise RevisionNotFound(f"{ref} is {revision.state}, not verified; cannot export it")
        commit = revision.commit
        source, mirrored_at = revision.source_endpoint, revision.mirrored_at
        refs = tuple(
            IndexRef(name=r.name, set_at=r.updated_at)
            for r in sorted(revision.repo.refs, key=lambda r: r.name)
            if r.commit == commit
        )
        files = tuple(
            IndexFile(path=f.path, size=f.size, sha256=f.sha256, git_oid=f.git_oid, lfs=f.lfs)
            for f in sorted(revision.files, key=lambda f: f.path)
        )
        card = revision.card
        described = IndexCard(
            data=dict(card.data) if card else {}, gated=card.gated if card else None
        )
        hops = tuple(Hop.model_validate(dict(custody_hop(p))) for p in revision.provenance)
    node_signature(ctx, ref, commit)
    contents = _signature_files(ctx, ref, commit, {f.path: f.sha256 for f in files})
    rev = IndexRevision(
        repo=ref.repo_id,
        commit=commit,
        source=source,
        mirrored_at=mirrored_at,
        refs=refs,
        files=files,
        card=described,
        provenance=hops,
        signatures=tuple(
            IndexMember(name=n, size=len(d), sha256=hashlib.sha256(d).hexdigest())
            for n, d in contents.items()
        ),
    )
    return rev, {rev.member(n): d for n, d in contents.items()}


def plan_bundle(ctx: Context, refs: Sequence[RepoRef], since: Listing | None = None) -> _Plan:
    """What a bundle of ``refs`` carries, leaving out what ``since`` says the far side has."""
    revisions: dict[tuple[str, str], IndexRevision] = {}
    members: dict[str, bytes] = {}
    skipped = []
    for ref in refs:
        rev, contents = _collect(ctx, ref)
        if since is not None and since.holds(rev):
            skipped.append({"repo": rev.repo, "commit": rev.commit})
            continue
        revisions.setdefault((rev.repo, rev.commit), rev)
        members.update(contents)
    blobs: dict[str, int] = {}
    held = set(since.blobs) if since else set()
    skipped_blobs = set()
    for rev in revisions.values():
        for f in rev.files:
            if f.sha256 in held:
                skipped_blobs.add(f.sha256)
            else:
                blobs.setdefault(f.sha256, f.size)
    key = node_key(ctx).public_key()
    index = Index(
        format="hubd-bundle",
        version=VERSION,
        created_at=datetime.now(UTC),
        node=IndexNode(
            name=ctx.settings.node_name, public_key=public_pem(key).decode(), key_hint=key_hint(key)
        ),
        since=since.node if since else None,
        revisions=tuple(revisions.values()),
        blobs=tuple(IndexBlob(sha256=s, size=n) for s, n in blobs.items()),
    )
    return _Plan(index, members, skipped, len(skipped_blobs))


class _TarStream:
    """A tar written straight to a binary stream, each byte once.

    Headers are tarfile's own (PAX); the data goes to ``out`` as read. tarfile's stream mode
    copies every block through its buffer again, which halves export throughput.
    """

    def __init__(self, out: IO[bytes], mtime: int) -> None:
        self.out = out
        self.mtime = mtime
        self.offset = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def add(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self.mtime, 0o644
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        written = 0
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
        if written != size:
            raise StoreError(f"{name}: {written} bytes where {size} were declared")
        self._write(tarfile.NUL * (-size % tarfile.BLOCKSIZE))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record as tar writes it."""
        self._write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        self._write(tarfile.NUL * (-self.offset % tarfile.RECORDSIZE))


def _blob_chunks(ctx: Context, sha256: str, size: int, progress: Progress) -> Iterator[bytes]:
    """A stored blob's bytes, hashed on the way: a damaged blob fails the export."""
    digest = hashlib.sha256()
    try:
        with ctx.store.open_read(sha256) as fh:
            name = f"blobs/{sha256[:16]}"
            progress.file_started(name, size, 0)
            actual = 0
            while actual <= size and (chunk := fh.read(CHUNK)):
                actual += len(chunk)
                if actual > size:
                    break
                digest.update(chunk)
                yield chunk
                progress.advance(name, len(chunk))
            if actual != size:
                raise SizeMismatch(
                    f"stored blob {sha256} is damaged ({actual}+ bytes, expected {size})"
                    if actual > size
                    else f"stored blob {sha256} is damaged ({actual} bytes, expected {size})",
                    hint="`hubd verify` finds and names the revision; re-mirror it",
                )
            progress.file_done(name)
    except FileNotFoundError:
        raise StoreError(
            f"blob {sha256} is missing from the store", hint="`hubd verify` names the revision"
        ) from None
    if digest.hexdigest() != sha256:
        raise HashMismatch(
            f"stored blob {sha256} is damaged (sha256 {digest.hexdigest()})",
            hint="`hubd verify` finds and names the revision; re-mirror it",
        )


def write_bundle(
    ctx: Context, plan: _Plan, out: IO[bytes], progress: Progress | None = None
) -> int:
    """Stream the bundle to ``out``: index, its signature, signature files, then every blob.

    Returns the blob bytes written. On failure ``out`` holds a bundle without its end, which
    import refuses as truncated.
    """
    tar = _TarStream(out, int(plan.index.created_at.timestamp()))
    index = json.dumps(plan.index.model_dump(mode="json"), indent=1).encode()
    tar.add(INDEX_NAME, len(index), [index])
    envelope = dsse_envelope(node_key(ctx), index, INDEX_PAYLOAD_TYPE)
    signature = json.dumps(envelope, indent=1).encode()
    tar.add(INDEX_SIGNATURE, len(signature), [signature])
    for name, data in plan.signatures.items():
        tar.add(name, len(data), [data])
    progress = progress or NullProgress()
    blobs = plan.index.blob_sizes
    progress.begin(len(blobs), sum(blobs.values()))
    try:
        for sha256, size in blobs.items():
            tar.add(f"blobs/{sha256}", size, _blob_chunks(ctx, sha256, size, progress))
    finally:
        progress.end()
    tar.close()
    return sum(blobs.values())


def export_bundle(
    ctx: Context,
    refs: Sequence[RepoRef],
    to: Path | IO[bytes],
    since: Listing | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write a bundle of ``refs`` to the file ``to`` (complete or absent) or a binary stream."""
    plan = plan_bundle(ctx, refs, since)
    if isinstance(to, Path):
        tmp = to.with_name(f".{to.name}.{os.getpid()}.partial")
        try:
            with tmp.open("wb") as fh:
                written = write_bundle(ctx, plan, fh, progress)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(to)
        except OSError as exc:
            raise StoreError(f"cannot write {to}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    else:
        written = write_bundle(ctx, plan, to, progress)
    return ExportResult(
        bundle=str(to) if isinstance(to, Path) else "-",
        node=plan.index.node.name,
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
