"""Commits pushed to this node through the Hub's write API: repos, commits, branches and tags.

A commit is built on its branch head: the head's files, then the pushed changes in order. Every
blob it names must already be in the store and verified (regular files are hashed as they are
written here, LFS files when they were uploaded). Its id is the git commit id of its tree,
parent, author (the token's name) and message (hubd.gitobjects), and it becomes visible only
through ops.record, after the policy allowed it, in one catalog transaction that also checks
the branch still points where the commit was based.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit.facts import RevisionRow
from ..audit.gate import check_upload
from ..catalog.models import Ref, RefKind, Repo
from ..catalog.revisions import (
    Authored,
    FileRecord,
    commit_for,
    find_ref,
    find_revision,
    repo_exists,
)
from ..context import Context
from ..errors import (
    BlobUnavailable,
    Conflict,
    EntryNotFound,
    Forbidden,
    InvalidRequest,
    RepoNotFound,
    RevisionNotFound,
    SignatureInvalid,
)
from ..gitobjects import Signature, commit_id, tree_id
from ..hashes import CHUNK, git_blob_header, git_blob_sha1, lfs_pointer
from ..model.card import card_record
from ..model.lineage import adapter_lineage
from ..refs import RepoRef, check_revision, is_commit
from ..sources.base import RemoteFile, RemoteRevision
from ..store import Expected
from ..trust.keys import NODE, trusted_signers
from ..trust.policy import check_bundle, load_rules, required_signers
from ..trust.shipped import SIGNATURE_FILE
from .record import card_text, record_snapshot

# The Hub's .gitattributes of a new model repo: what its first commit holds.
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5",
        "*.joblib", "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx",
        "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar",
        "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
        "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
).encode()  # fmt: skip
_IDENTITY = re.compile(r"[^A-Za-z0-9._ -]")
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


@dataclass(frozen=True)
class StoredFile:
    """A regular file of a commit, already written to the store and hashed."""

    path: str
    size: int
    sha256: str
    git_oid: str


@dataclass(frozen=True)
class LfsFile:
    """An LFS file of a commit: its bytes were uploaded (and verified) before."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Deletion:
    path: str
    folder: bool


Change = StoredFile | LfsFile | Deletion


@dataclass(frozen=True)
class Committed:
    repo_id: str
    revision: str
    commit: str


@contextmanager
def _repo_lock(repo_id: str) -> Iterator[None]:
    """One writer per repo in this process; the transaction's head check covers the others."""
    with _locks_lock:
        lock = _locks.setdefault(repo_id, threading.Lock())
    with lock:
        yield


def store_regular(ctx: Context, path: str, data: bytes) -> StoredFile:
    """Write a regular file's bytes to the store, verified by the writer (blocking).

    Until a commit names it the blob is in no revision: refused commits leave it to `hubd gc`.
    """
    size = len(data)
    sha256 = hashlib.sha256(data).hexdigest()
    with ctx.store.writer(Expected(path, size, sha256)) as writer:
        if writer.present is None:
            writer.restart()
            for start in range(0, size, CHUNK):
                writer.write(data[start : start + CHUNK])
            writer.commit()
    return StoredFile(path, size, sha256, git_blob_sha1(data))


def create_repo(ctx: Context, repo_id: str, author: str, endpoint: str) -> Committed:
    """A new repo with the Hub's first commit (its .gitattributes) on main (blocking).

    That commit holds no model, so the policy has nothing to judge yet: it judges every later one.
    """
    repo_id = RepoRef.parse(repo_id).repo_id
    with _repo_lock(repo_id):
        with ctx.catalog() as session:
            if repo_exists(session, repo_id):
                raise Conflict(f"You already created this model repo: {repo_id}")
        stored = store_regular(ctx, ".gitattributes", GITATTRIBUTES)
        return _record(
            ctx,
            repo_id,
            "main",
            None,
            {},
            [stored],
            "initial commit",
            author,
            endpoint,
            judge=False,
        )


def commit(
    ctx: Context,
    repo_id: str,
    branch: str,
    changes: Sequence[Change],
    message: str,
    author: str,
    endpoint: str,
    parent: str | None = None,
) -> Committed:
    """Commit ``changes`` on ``branch`` as ``author`` (blocking); 409 if ``parent`` is stale."""
    check_revision(branch)
    with _repo_lock(repo_id):
        with ctx.catalog() as session:
            head, files = _head(session, repo_id, branch)
        if parent is not None and parent != head:
            raise Conflict(
                f"parentCommit {parent} is not the head of {branch} ({head}): "
                "someone committed since; fetch and retry"
            )
        return _record(ctx, repo_id, branch, head, files, changes, message, author, endpoint)


def _head(session: Session, repo_id: str, branch: str) -> tuple[str, dict[str, FileRecord]]:
    if not repo_exists(session, repo_id):
        raise RepoNotFound(f"Repository {repo_id} not found")
    ref = find_ref(session, repo_id, branch)
    if ref is None:
        raise RevisionNotFound(f"Invalid rev id: {branch} is no branch of {repo_id}")
    if ref.kind == RefKind.TAG:
        raise InvalidRequest(f"{branch} is a tag of {repo_id}: commit to a branch")
    revision = find_revision(session, repo_id, ref.commit)
    if revision is None:
        raise RevisionNotFound(f"{repo_id}@{branch} points at a commit this node lacks")
    records = {
        f.path: FileRecord(f.path, f.size, f.sha256, f.git_oid, f.lfs) for f in revision.files
    }
    return ref.commit, records


def _apply(ctx: Context, files: dict[str, FileRecord], changes: Sequence[Change]) -> None:
    """The head's files with the changes applied in order; every blob must be here, verified."""
    for change in changes:
        if isinstance(change, Deletion):
            if not change.folder:
                if files.pop(change.path, None) is None:
                    raise EntryNotFound(f"A file with this name doesn't exist: {change.path}")
                continue
            prefix = change.path.rstrip("/") + "/"
            gone = [path for path in files if path.startswith(prefix)]
            if not gone:
                raise EntryNotFound(f"A folder with this name doesn't exist: {change.path}")
            for path in gone:
                del files[path]
        elif isinstance(change, LfsFile):
            if not ctx.store.has_blob(change.sha256, change.size):
                raise InvalidRequest(
                    f"{change.path}: LFS object {change.sha256} ({change.size} bytes) was not "
                    "uploaded to this node, or did not verify"
                )
            oid = git_blob_sha1(lfs_pointer(change.sha256, change.size))
            files[change.path] = FileRecord(change.path, change.size, change.sha256, oid, True)
        else:
            files[change.path] = FileRecord(
                change.path, change.size, change.sha256, change.git_oid, False
            )
    directories = {"/".join(p.split("/")[:d]) for p in files for d in range(1, p.count("/") + 1)}
    clash = sorted(directories & set(files))
    if clash:
        raise InvalidRequest(f"{clash[0]} cannot be both a file and a folder")
    for record in files.values():
        if not ctx.store.has_blob(record.sha256, record.size):
            raise BlobUnavailable(f"{record.path}: blob {record.sha256} is not on this node")


def _git_oid(ctx: Context, record: FileRecord) -> str:
    """The file's git blob id; a mirrored file recorded without one gets it from its bytes."""
    if record.git_oid is not None:
        return record.git_oid
    if record.lfs:
        return git_blob_sha1(lfs_pointer(record.sha256, record.size))
    digest = hashlib.sha1(git_blob_header(record.size), usedforsecurity=False)
    with ctx.store.blob_path(record.sha256).open("rb") as blob:
        while chunk := blob.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def identity(author: str, node: str) -> tuple[str, str]:
    """(name, email) of a token's commits: what git accepts in an author line."""
    name = _IDENTITY.sub("-", author).strip() or "hubd"
    return name, f"{name.replace(' ', '-')}@{_IDENTITY.sub('-', node) or 'hubd'}"


def _record(
    ctx: Context,
    repo_id: str,
    branch: str,
    head: str | None,
    files: dict[str, FileRecord],
    changes: Sequence[Change],
    message: str,
    author: str,
    endpoint: str,
    *,
    judge: bool = True,
) -> Committed:
    _apply(ctx, files, changes)
    records = [files[path] for path in sorted(files)]
    oids = {r.path: _git_oid(ctx, r) for r in records}
    name, email = identity(author, ctx.settings.node_name)
    text = message if message.endswith("\n") else message + "\n"
    when = int(time.time())
    new = commit_id(tree_id(oids), [head] if head else [], Signature(name, email, when), text)
    digests = {r.path: r.sha256 for r in records}
    remote_files = [
        RemoteFile(r.path, r.size, oids[r.path], r.sha256 if r.lfs else None) for r in records
    ]
    _require_signer(ctx, repo_id, new, digests)
    if judge:
        readme = digests.get("README.md")
        card = card_record(card_text(ctx.store, readme) if readme else None, {}, None)
        local = {path: ctx.store.blob_path(digest) for path, digest in digests.items()}
        is_adapter, base = adapter_lineage(local, card)
        at = datetime.fromtimestamp(when, UTC)
        check_upload(ctx, RevisionRow(repo_id, new, at, endpoint, is_adapter, base, card))

    def still_head(session: Session) -> None:
        ref = find_ref(session, repo_id, branch)
        if (ref.commit if ref else None) != head:
            raise Conflict(f"{repo_id}@{branch} moved while this commit was being recorded")

    remote = RemoteRevision(repo_id, new, endpoint, tuple(remote_files))
    record_snapshot(
        ctx,
        RepoRef.parse(f"{repo_id}@{branch}"),
        remote,
        remote_files,
        digests,
        source_url=f"{endpoint}/{repo_id}",
        authored=Authored(head, text, author, datetime.fromtimestamp(when, UTC)),
        guard=still_head,
    )
    return Committed(repo_id, branch, new)


def _require_signer(ctx: Context, repo_id: str, commit: str, digests: dict[str, str]) -> None:
    """A trust rule naming signers for the repo: the commit must carry their valid model.sig.

    A mirror gets those signatures from its source; a push has only what it carries.
    """
    required = [name for name in required_signers(load_rules(ctx), repo_id) if name != NODE]
    if not required:
        return
    shipped = digests.get(SIGNATURE_FILE)
    label = f"{repo_id}@{commit[:12]}: {SIGNATURE_FILE}"
    try:
        data = ctx.store.blob_path(shipped).read_bytes() if shipped else None
        signer = check_bundle(data, digests, trusted_signers(ctx), label) if data else None
    except SignatureInvalid as exc:
        raise Forbidden(exc.message) from None
    missing = [name for name in required if signer is None or name != signer.name]
    if missing:
        raise Forbidden(
            f"{repo_id}: the trust policy needs a valid {SIGNATURE_FILE} by "
            f"{', '.join(missing)} in the commit",
            hint=f"sign every file of the commit and commit {SIGNATURE_FILE} with them",
        )


def create_ref(ctx: Context, repo_id: str, name: str, kind: RefKind, start: str | None) -> str:
    """A branch or tag ``name`` at ``start`` (a ref or commit; main when None): its commit."""
    check_revision(name)
    if is_commit(name) or name.startswith("refs/"):
        raise InvalidRequest(f"{name!r} cannot name a {kind}: it reads as a commit or a ref path")
    with _repo_lock(repo_id), ctx.catalog.begin() as session:
        repo = session.scalar(select(Repo).where(Repo.repo_id == repo_id))
        if repo is None:
            raise RepoNotFound(f"Repository {repo_id} not found")
        target = commit_for(session, repo_id, check_revision(start or "main"))
        if target is None or find_revision(session, repo_id, target) is None:
            raise RevisionNotFound(f"Invalid rev id: {start or 'main'}")
        if find_ref(session, repo_id, name) is not None:
            raise Conflict(f"Reference already exists: {name}")
        session.add(Ref(repo_pk=repo.id, name=name, commit=target, kind=kind))
        session.flush()
        ctx.store.set_ref(repo_id, name, target)
    return target


def delete_ref(ctx: Context, repo_id: str, name: str, kind: RefKind) -> None:
    """Drop branch or tag ``name``; the commits stay (other refs, the commit list, mirrors)."""
    check_revision(name)
    if kind == RefKind.BRANCH and name == "main":
        raise InvalidRequest("main cannot be deleted")
    with _repo_lock(repo_id), ctx.catalog.begin() as session:
        ref = find_ref(session, repo_id, name)
        if ref is None or (ref.kind is not None and ref.kind != kind):
            raise RevisionNotFound(f"Invalid rev id: no {kind} {name} in {repo_id}")
        session.delete(ref)
        session.flush()
        ctx.store.ref_path(repo_id, name).unlink(missing_ok=True)
