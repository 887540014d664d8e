"""`hubd add`: publish a local directory (an in-house fine-tune, a LoRA) as a registry revision.

The commit id is derived from the manifest, so adding the same content again is a no-op and any
change is a new revision. Files get the git oids the Hub would give them (the blob sha1, or for
LFS-sized files the sha1 of their LFS pointer), so the revision serves to Hugging Face clients
and peers exactly like a mirrored one.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..catalog.revisions import find_revision
from ..context import Context
from ..errors import InvalidRequest, UnsafePath
from ..hashes import CHUNK, git_blob_header, git_blob_sha1, lfs_pointer
from ..refs import RepoRef, check_revision, safe_relpath
from ..sources.base import RemoteFile, RemoteRevision
from ..store import Expected
from ..trust.shipped import SIGNATURE_FILE
from .record import record_snapshot
from .sign import keep_signature, trusted_bundle

# What the Hub's default .gitattributes stores in LFS, plus anything of 10 MiB or more.
LFS_SUFFIXES = (
    ".safetensors",
    ".gguf",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".pkl",
    ".npy",
    ".npz",
    ".tar",
    ".zip",
    ".gz",
)
LFS_MIN_SIZE = 10 * 1024 * 1024


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would keep this file in LFS (a pointer in git, the bytes beside)."""
    return size >= LFS_MIN_SIZE or path.endswith(LFS_SUFFIXES)


@dataclass
class AddResult:
    repo: str
    revision: str
    commit: str
    files: int
    bytes_added: int
    bytes_reused: int
    seconds: float
    up_to_date: bool
    snapshot: str
    is_adapter: bool
    base_model: str | None
    signed_by: str | None = None  # the trusted signer of the directory's model.sig

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def files_below(root: Path) -> list[tuple[str, Path]]:
    """(repo path, file) for every file below root; nothing may point outside it."""
    found = []
    real_root = root.resolve()
    for current, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in (".git", ".cache"))
        for name in sorted(names):
            path = Path(current) / name
            if not path.resolve().is_relative_to(real_root):
                raise UnsafePath(f"{path} points outside {root}")
            if not path.is_file() or path == root / SIGNATURE_FILE:
                continue
            found.append((safe_relpath(path.relative_to(root).as_posix()), path))
    return found


def digests_of(path: Path) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) in one read."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(git_blob_header(size), usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest(), size


def _store(ctx: Context, label: str, path: Path, sha256: str, size: int) -> int:
    """Copy into the store unless present, verified against the digest just taken: bytes copied."""
    with ctx.store.writer(Expected(label, size, sha256)) as writer:
        if writer.present is not None:
            return 0
        writer.restart()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                writer.write(chunk)
        writer.commit()
    return size


def add(ctx: Context, root: Path, repo_id: str, revision: str = "main") -> AddResult:
    """Hash, store and record ``root`` as ``repo_id`` at a manifest-derived commit (blocking)."""
    started = time.monotonic()
    ref = RepoRef.parse(f"{repo_id}@{check_revision(revision)}")
    if not root.is_dir():
        raise InvalidRequest(f"{root} is not a directory")
    entries = files_below(root)
    if not entries:
        raise InvalidRequest(f"{root} has no files to add")
    remote_files: list[RemoteFile] = []
    digests: dict[str, str] = {}
    added = 0
    for rel, path in entries:
        sha256, sha1, size = digests_of(path)
        lfs = is_lfs(rel, size)
        git_oid = git_blob_sha1(lfs_pointer(sha256, size)) if lfs else sha1
        added += _store(ctx, f"{root}/{rel}", path, sha256, size)
        remote_files.append(RemoteFile(rel, size, git_oid, sha256 if lfs else None))
        digests[rel] = sha256
    bundle = root / SIGNATURE_FILE  # an export from another node: its signature must hold
    signer = trusted_bundle(ctx, bundle, digests, str(root)) if bundle.is_file() else None
    manifest = "".join(f"{rel}\0{digests[rel]}\n" for rel, _ in entries)
    commit = hashlib.sha1(
        f"hubd-add\0{ref.repo_id}\n{manifest}".encode(), usedforsecurity=False
    ).hexdigest()
    with ctx.catalog() as session:
        known = find_revision(session, ref.repo_id, commit)
        up_to_date = known is not None and {f.path for f in known.files} == set(digests)
    remote = RemoteRevision(ref.repo_id, commit, f"file://{root.resolve()}", tuple(remote_files))
    recorded = record_snapshot(
        ctx, ref, remote, remote_files, digests, source_url=f"file://{root.resolve()}"
    )
    if signer is not None:
        keep_signature(ctx, ref.repo_id, commit, signer.hint, bundle.read_bytes())
    total = sum(f.size for f in remote_files)
    return AddResult(
        repo=ref.repo_id,
        revision=revision,
        commit=commit,
        files=len(remote_files),
        bytes_added=added,
        bytes_reused=total - added,
        seconds=round(time.monotonic() - started, 3),
        up_to_date=up_to_date,
        snapshot=str(recorded.snapshot),
        is_adapter=recorded.is_adapter,
        base_model=recorded.base_model,
        signed_by=signer.name if signer else None,
    )
