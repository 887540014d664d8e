"""`hubd import`: a bundle becomes visible only once every byte, signature and ref checks out.

1. Receive: the tar is read as a stream. The index comes first, then its DSSE signature by the
   key the index names (the exporting node's). Each member is checked before a byte of it is
   read (a plain relative name the index lists, a regular file, the size the index declares,
   room on disk); each blob goes through the store's hashing writer into a staging store under
   ``store/tmp``, where nothing serves it.
2. Check: every revision's blobs are at hand, no file contradicts the catalog's copy of the same
   commit, a ref that exists here moves only for an exporter this node trusts and never back to
   an older commit (a replayed bundle: the ref times are signed with the index), every
   signature by a trusted key verifies against the revision's manifest and the trust policy
   is met.
3. Commit, under the store's shared guard: blobs are renamed into the store, signature files
   copied, revisions recorded in one catalog transaction (``record_snapshot``: the node signs
   what it verified). A failure here rolls the transaction back and the journal puts the store's
   files back (hubd.journal), so the store and catalog hold either the whole bundle or
   exactly what they held before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tarfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from ..catalog.db import catalog_errors
from ..catalog.models import RevisionState
from ..catalog.revisions import find_ref, find_revision
from ..context import Context
from ..errors import (
    HashMismatch,
    InvalidRequest,
    ReplayedRevision,
    SignatureInvalid,
    SizeMismatch,
    StoreError,
    UnsafePath,
    UntrustedSigner,
)
from ..hashes import CHUNK, git_blob_header
from ..journal import Journal, recover
from ..ops.record import record_snapshot
from ..ops.space import require_free
from ..refs import RepoRef, safe_relpath
from ..sources.base import Attestations, NullProgress, Progress, RemoteFile, RemoteRevision
from ..store import Expected, Store
from ..trust.admission import admit
from ..trust.keys import signature_dir, trusted_signers, write_atomic
from ..trust.policy import may_use
from ..trust.provenance import CHAIN_FILE
from .format import INDEX_LIMIT, INDEX_NAME, INDEX_SIGNATURE, Index, IndexRevision

PRESENT = "already present"
# tar records tarfile reads whole into memory (pax and GNU long-name headers): bounded first.
_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_EXTENDED_LIMIT = 1024 * 1024


@dataclass
class ImportResult:
    bundle: str
    exporter: str
    exporter_key: str
    exporter_trusted_as: str | None
    revisions: list[dict[str, Any]] = field(default_factory=list)
    blobs_added: int = 0
    bytes_added: int = 0

    @property
    def already_present(self) -> bool:
        return not self.blobs_added and all(r["status"] == PRESENT for r in self.revisions)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "already_present": self.already_present}


class _Header(tarfile.TarInfo):
    """A tar header that refuses an oversized extended header before tarfile reads it whole."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > _EXTENDED_LIMIT:
            raise InvalidRequest(f"tar extended header of {self.size} bytes; not a hubd bundle")
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member


@dataclass
class _Received:
    index: Index
    started: datetime
    signatures: dict[str, bytes] = field(default_factory=dict)  # member name -> bytes
    staged: dict[str, int] = field(default_factory=dict)  # sha256 -> size, in the staging store
    git: dict[str, str] = field(default_factory=dict)  # verified git blob oid -> sha256
    admitted: bool = False  # signatures and policy checked
    index_signed: bool = False  # the index's signature by the key it names holds
    exporter_trusted: bool = False  # that key is in this node's trust store


class _Staging:
    """A private store under store/tmp: blobs land there verified, invisible until moved."""

    def __init__(self, store: Store) -> None:
        self.made_tmp = not store.tmp_dir.exists()
        self.tmp_dir = store.tmp_dir
        self.store = Store(store.tmp_dir / f"import-{os.getpid()}-{secrets.token_hex(4)}")

    def receive(
        self,
        data: IO[bytes],
        sha256: str,
        size: int,
        oids: set[str],
        label: str,
        progress: Progress,
    ) -> None:
        """Write one blob through the hashing writer; check its git oid when files name one."""
        sha1 = hashlib.sha1(git_blob_header(size), usedforsecurity=False) if oids else None
        with self.store.writer(Expected(f"{label}: blobs/{sha256}", size, sha256)) as writer:
            name = f"blobs/{sha256[:16]}"
            progress.file_started(name, size, 0)
            while chunk := data.read(CHUNK):
                writer.write(chunk)
                progress.advance(name, len(chunk))
                if sha1 is not None:
                    sha1.update(chunk)
            writer.commit()
            progress.file_done(name)
        if sha1 is not None and oids != {sha1.hexdigest()}:
            raise HashMismatch(
                f"{label}: blobs/{sha256}: git blob oid {sha1.hexdigest()}, index declares "
                + ", ".join(sorted(oids))
            )

    def remove(self) -> None:
        shutil.rmtree(self.store.root, ignore_errors=True)
        if self.made_tmp:
            with contextlib.suppress(OSError):  # someone else's transfer is in it now
                self.tmp_dir.rmdir()


def _member_name(member: tarfile.TarInfo, label: str) -> str:
    """The member's name if it is a plain file at a plain relative path, else a typed error."""
    try:
        name = safe_relpath(member.name)
    except UnsafePath:
        raise UnsafePath(f"{label}: unsafe member name {member.name!r}") from None
    if member.islnk() or member.issym():
        raise UnsafePath(f"{label}: {name} is a link to {member.linkname!r}; bundles hold none")
    if member.isdev():
        raise UnsafePath(f"{label}: {name} is a device file; bundles hold none")
    if not member.isreg() or member.issparse():
        raise InvalidRequest(f"{label}: {name} is not a regular file; not a hubd bundle")
    return name


def _open_member(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> IO[bytes]:
    """The member's bytes; tarfile has none for anything but a regular file."""
    data = tar.extractfile(member)
    if data is None:
        raise InvalidRequest(f"{label}: {member.name} is not a regular file; not a hubd bundle")
    return data


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> bytes:
    return _open_member(tar, member, label).read()


def _check_space(ctx: Context, index: Index, label: str) -> None:
    needed = sum(b.size for b in index.blobs if not ctx.store.has_blob(b.sha256, b.size))
    require_free(
        ctx.store.root,
        needed,
        f"{label}: the bundle's blobs",
        hint="free space (or `hubd gc`) and import again; nothing was written",
    )


def _receive(
    ctx: Context, source: IO[bytes], label: str, staging: _Staging, progress: Progress
) -> _Received:
    received: _Received | None = None
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK, tarinfo=_Header) as tar:
            for member in tar:
                name = _member_name(member, label)
                if received is None:
                    if name != INDEX_NAME:
                        raise InvalidRequest(
                            f"{label}: missing index: the first member is {name}, not {INDEX_NAME}"
                        )
                    if member.size > INDEX_LIMIT:
                        raise InvalidRequest(f"{label}: index of {member.size} bytes; too large")
                    raw_index = _read_small(tar, member, label)
                    index = Index.parse(raw_index, label)
                    received = _Received(index, datetime.now(UTC))
                    expected = received.index.members()
                    digests = {
                        r.member(s.name): s.sha256
                        for r in received.index.revisions
                        for s in r.signatures
                    }
                    oids = _git_oids(received.index)
                    _check_space(ctx, received.index, label)
                    progress.begin(len(index.blobs), sum(b.size for b in index.blobs))
                    continue
                if not received.index_signed:
                    if name != INDEX_SIGNATURE or member.size > INDEX_LIMIT:
                        raise InvalidRequest(
                            f"{label}: the index is not signed: the second member is {name}, "
                            f"not {INDEX_SIGNATURE}"
                        )
                    index.check_signature(raw_index, _read_small(tar, member, label), label)
                    received.index_signed = True
                    received.exporter_trusted = index.node.key_hint in {
                        s.hint for s in trusted_signers(ctx) if s.ca is None
                    }
                    continue
                if name in seen or name in (INDEX_NAME, INDEX_SIGNATURE):
                    raise InvalidRequest(f"{label}: {name} appears twice")
                seen.add(name)
                if name not in expected:
                    raise InvalidRequest(f"{label}: {name} is not named in the bundle's index")
                if member.size != expected[name]:
                    raise SizeMismatch(
                        f"{label}: {name} declares {member.size} bytes; "
                        f"the index says {expected[name]}"
                    )
                if not name.startswith("blobs/"):
                    data = _read_small(tar, member, label)
                    if hashlib.sha256(data).hexdigest() != digests[name]:
                        raise HashMismatch(
                            f"{label}: {name} does not match its sha256 in the index"
                        )
                    received.signatures[name] = data
                    continue
                if not received.admitted and set(digests) <= seen:  # before the first blob
                    _admit_all(ctx, received, label)
                sha256 = name.removeprefix("blobs/")
                if ctx.store.has_blob(sha256, member.size):
                    continue  # ours already: its bytes are skipped unread
                blob = _open_member(tar, member, label)
                oid = oids.get(sha256, set())
                staging.receive(blob, sha256, member.size, oid, label, progress)
                received.staged[sha256] = member.size
                received.git.update(dict.fromkeys(oids.get(sha256, ()), sha256))
    except tarfile.TarError as exc:
        if received is None:
            raise InvalidRequest(f"{label}: not a hubd bundle (tar: {exc})") from None
        raise SizeMismatch(f"{label}: the bundle is truncated or damaged (tar: {exc})") from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read {label}: {exc.strerror or exc}") from None
    finally:
        progress.end()
    if received is None:
        raise InvalidRequest(f"{label}: missing index: the bundle is empty")
    if not received.index_signed:
        raise InvalidRequest(f"{label}: the index is not signed ({INDEX_SIGNATURE} is missing)")
    if missing := sorted(set(expected) - seen):
        raise SizeMismatch(
            f"{label}: the bundle is truncated: {len(missing)} member(s) missing, "
            f"first {missing[0]}"
        )
    if not received.admitted:
        _admit_all(ctx, received, label)
    return received


def _git_oids(index: Index) -> dict[str, set[str]]:
    """sha256 -> the git blob oids that non-LFS files declare for that content."""
    oids: dict[str, set[str]] = {}
    for rev in index.revisions:
        for f in rev.files:
            if f.git_oid and not f.lfs:
                oids.setdefault(f.sha256, set()).add(f.git_oid)
    return oids


@dataclass
class _Change:
    """What importing one revision does to this node."""

    rev: IndexRevision
    status: str  # imported | updated | already present
    record: bool  # record_snapshot: new files or refs
    refs: list[str]  # refs that move to this commit
    copy: list[str]  # signature files this node lacks

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.rev.repo,
            "commit": self.rev.commit,
            "status": self.status,
            "refs": [r.name for r in self.rev.refs],
        }


def _changes(ctx: Context, received: _Received, label: str) -> list[_Change]:
    """Per revision: what is missing here, checked against the catalog (nothing written)."""
    changes = []
    with ctx.catalog() as session:
        for rev in received.index.revisions:
            existing = find_revision(session, rev.repo, rev.commit)
            have = {f.path: f.sha256 for f in existing.files} if existing else {}
            for f in rev.files:
                if have.get(f.path, f.sha256) != f.sha256:
                    raise ReplayedRevision(
                        f"{label}: {rev.label}: {f.path} is {f.sha256[:16]}… in the bundle but "
                        f"{have[f.path][:16]}… in this catalog's copy of the same commit"
                    )
                if f.sha256 not in received.staged and not ctx.store.has_blob(f.sha256, f.size):
                    raise InvalidRequest(
                        f"{label}: {rev.label}: blob {f.sha256} ({f.path}) is neither in the "
                        "bundle nor in this store",
                        hint="an incremental bundle must be made with --since this node's listing",
                    )
            moved = []
            for ref in rev.refs:
                row = find_ref(session, rev.repo, ref.name)
                if row is not None and row.commit != rev.commit and not received.exporter_trusted:
                    raise UntrustedSigner(
                        f"{label}: {rev.repo} ref {ref.name} is at {row.commit[:12]} here; only "
                        f"an exporter this node trusts may move it (the bundle is signed by "
                        f"{received.index.node.name}, key {received.index.node.key_hint[:16]}…)",
                        hint="trust the exporting node: `hubd keys show --public > node.pub` "
                        "there, `hubd trust add NAME node.pub` here",
                    )
                if row is not None and row.commit != rev.commit and row.updated_at > ref.set_at:
                    raise ReplayedRevision(
                        f"{label}: {rev.repo} ref {ref.name}: the bundle points it at "
                        f"{rev.commit[:12]} as of {ref.set_at.isoformat()}, but this catalog "
                        f"moved it to {row.commit[:12]} later ({row.updated_at.isoformat()}); "
                        "refusing to replay an older revision",
                        hint="export the current revision again on the far side",
                    )
                if row is None or row.commit != rev.commit:
                    moved.append(ref.name)
            directory = signature_dir(ctx, rev.repo, rev.commit)
            copy = [
                s.name
                for s in rev.signatures
                if not (directory / s.name).exists() and (existing is None or s.name != CHAIN_FILE)
            ]
            record = (
                existing is None
                or existing.state != RevisionState.VERIFIED
                or not set(rev.manifest) <= set(have)
                or bool(moved)
            )
            status = "imported" if existing is None else "updated" if record or copy else PRESENT
            changes.append(_Change(rev, status, record, moved, copy))
    return changes


def _carried(index: Index, rev: IndexRevision, received: _Received, label: str) -> Attestations:
    """The revision's signature directory as a peer would serve it, for admission."""
    files = {s.name: received.signatures[rev.member(s.name)] for s in rev.signatures}
    try:
        chain = [
            json.loads(line) for line in files.get(CHAIN_FILE, b"").splitlines() if line.strip()
        ]
    except ValueError:
        raise SignatureInvalid(f"{label}: {rev.label}: malformed {CHAIN_FILE}") from None
    return Attestations(
        origin=f"the bundle {label} (exported by {index.node.name})",
        hops=[
            h.model_dump(mode="json", exclude={"hop"})
            for h in rev.provenance
            if h.commit == rev.commit
        ],
        signatures={n: d for n, d in files.items() if n.endswith(".sig")},
        statements=chain,
    )


def _admit_all(ctx: Context, received: _Received, label: str) -> None:
    """Every signature and statement by a trusted key verifies, and the policy is met.

    The same check record_snapshot repeats when it records; here it runs before any blob is
    read (when the signature files come first, as hubd writes them) so a refusal is quick.
    """
    index = received.index
    for rev in index.revisions:
        try:
            admit(
                ctx, rev.repo, rev.commit, rev.manifest, _carried(index, rev, received, label), None
            )
        except UntrustedSigner as exc:
            raise UntrustedSigner(
                f"{label}: {exc.message}",
                hint=f"it was exported by node {index.node.name} (key "
                f"{index.node.key_hint[:16]}…); to trust that node: "
                "`hubd keys show --public > node.pub` there, `hubd trust add NAME node.pub` here",
            ) from None
    received.admitted = True


def _record(
    ctx: Context, change: _Change, received: _Received, label: str, session: Session
) -> None:
    """Record the revision as a mirror from the bundle would, then copy in what it lacks.

    record_snapshot admits the carried signatures and statements again, inside the import's
    catalog transaction, then signs the revision with the node key and appends its statement.
    """
    rev = change.rev
    if change.record:
        remote = RemoteRevision(
            rev.repo,
            rev.commit,
            f"bundle:{received.index.node.name}",
            tuple(
                RemoteFile(f.path, f.size, f.git_oid, f.sha256 if f.lfs else None)
                for f in rev.files
            ),
            rev.card.gated,
            rev.card.data,
        )
        carried = _carried(received.index, rev, received, label)
        org, name = rev.repo.split("/")
        targets = [RepoRef(org, name, r) for r in change.refs] or [RepoRef(org, name, rev.commit)]
        for target in targets:
            record_snapshot(
                ctx,
                target,
                remote,
                remote.files,
                rev.manifest,
                carried=carried,
                started=received.started,
                session=session,
            )
        for ref in rev.refs:  # when the exporter moved the ref, not when this node did
            row = find_ref(session, rev.repo, ref.name) if ref.name in change.refs else None
            if row is not None:
                row.updated_at = ref.set_at
    directory = signature_dir(ctx, rev.repo, rev.commit)
    for file_name in change.copy:
        if not (directory / file_name).exists():
            write_atomic(directory / file_name, received.signatures[rev.member(file_name)])


def _commit(
    ctx: Context, received: _Received, changes: list[_Change], staging: _Staging, label: str
) -> dict[str, int]:
    """Make the verified bundle visible; returns the blobs added (sha256 -> size)."""
    store = ctx.store
    blobs = {s: n for s, n in received.staged.items() if not store.has_blob(s, n)}
    work = [c for c in changes if c.status != PRESENT]
    if not blobs and not work:
        return {}
    recover(store, ctx.catalog)
    with store.guard(exclusive=False), Journal(store, ctx.catalog) as journal:
        for change in work:  # a blob skipped as ours could be gone (`hubd gc` in between)
            for f in change.rev.files:
                if f.sha256 not in blobs and not store.has_blob(f.sha256, f.size):
                    raise StoreError(
                        f"{label}: blob {f.sha256} left the store during the import",
                        hint="import again; nothing was changed",
                    )
        try:
            for change in work:
                journal.remember(change.rev.repo, change.rev.commit, change.refs)
            for sha256, size in blobs.items():
                if store.local_blobs:  # a verified orphan in a bucket is gc's, not the journal's
                    journal.add_file(store.blob_path(sha256))
                store.adopt(staging.store.blob_path(sha256), sha256, size)
            for oid, sha256 in received.git.items():
                if store.known_git_blob(oid) is None:
                    journal.add_file(store.git_index_dir / oid[:2] / oid)
                    store.remember_git_blob(oid, sha256)
            # All revisions, or none: a failure rolls back, and the journal puts the files back.
            with catalog_errors(), ctx.catalog.begin() as session:
                for change in work:
                    _record(ctx, change, received, label, session)
        except OSError as exc:
            raise StoreError(f"cannot import into {store.root}: {exc.strerror or exc}") from None
    return blobs


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None


def import_bundle(
    ctx: Context, source: Path | IO[bytes], progress: Progress | None = None
) -> ImportResult:
    """Import a bundle from a file or a binary stream: all of it, or nothing (see module doc)."""
    label = str(source) if isinstance(source, Path) else "<stdin>"
    progress = progress or NullProgress()
    staging = _Staging(ctx.store)
    try:
        if isinstance(source, Path):
            with _open(source) as stream:
                received = _receive(ctx, stream, label, staging, progress)
        else:
            received = _receive(ctx, source, label, staging, progress)
        changes = _changes(ctx, received, label)
        added = _commit(ctx, received, changes, staging, label)
    finally:
        staging.remove()
    index = received.index
    return ImportResult(
        bundle=label,
        exporter=index.node.name,
        exporter_key=index.node.key_hint,
        exporter_trusted_as=next(
            (s.name for s in trusted_signers(ctx) if s.hint == index.node.key_hint), None
        ),
        revisions=[
            {**c.to_json(), "signers": may_use(ctx, c.rev.repo, c.rev.commit).signers}
            for c in changes
        ],
        blobs_added=len(added),
        bytes_added=sum(added.values()),
    )
