"""The content-addressed store on disk.

Layout under ``store_dir``::

    blobs/sha256/ab/<digest>              every distinct content once, read-only
    tmp/<key>.partial, tmp/<key>.lock     a transfer in progress (kept across crashes: resume)
    snapshots/<org>/<name>/<commit>/<path> -> relative symlink to the blob (original names)
    refs/<org>/<name>/<branch-or-tag>     the commit a ref pointed at when last mirrored
    signatures/<org>/<name>/<commit>/<key-hint>.sig   OMS bundles (hubd.verify.keys)

A blob only ever appears by ``os.replace`` of a fully written, fsynced and verified temp file,
so a crash leaves either nothing or a ``.partial`` to resume, never a wrong blob.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import HashMismatch, SizeMismatch, StoreError
from .refs import safe_relpath
from .verify.hashes import CHUNK, git_blob_header


def temp_path(path: Path) -> Path:
    """A sibling temp name no other process or thread writing ``path`` uses at the same time."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _disk_error(exc: OSError, what: str) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return StoreError(
            f"disk full while writing {what}",
            hint="free space and re-run: the transfer resumes from what is on disk",
        )
    return StoreError(f"cannot write {what}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Expected:
    """What the source declares about a file, checked before the blob becomes visible."""

    label: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None

    @property
    def key(self) -> str:
        """Temp-file name: the sha256 when known (LFS), else the git oid."""
        return self.sha256 if self.sha256 else f"git-{self.git_oid}"


class BlobWriter:
    """Receives a file's bytes in order, hashing as they pass, and commits a verified blob.

    Use as a context manager (it holds the per-content lock). ``offset`` is where the transfer
    resumes; the bytes already there were hashed on open, so the whole file is still verified.
    """

    def __init__(self, store: Store, expected: Expected) -> None:
        self.store = store
        self.expected = expected
        self.partial = store.tmp_dir / f"{expected.key}.partial"
        self._lock_path = store.tmp_dir / f"{expected.key}.lock"
        self._lock_fd = -1
        self._io = threading.Lock()  # a write in a worker thread finishes before close
        self.offset = 0
        self.present: str | None = None
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1()

    def __enter__(self) -> BlobWriter:
        try:
            self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise _disk_error(exc, str(self._lock_path)) from None
        try:
            return self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _open(self) -> BlobWriter:
        digest = self.expected.sha256 or self.store.known_git_blob(self.expected.git_oid)
        if digest and self.store.has_blob(digest, self.expected.size):
            self.present = digest
            return self
        try:
            self._file = open(self.partial, "ab+")  # noqa: SIM115 - closed in __exit__
            size = self._file.seek(0, os.SEEK_END)
            if size > self.expected.size:
                self._file.truncate(0)
                size = 0
            self._reset_hashes()
            self._file.seek(0)
            remaining = size
            while remaining:
                chunk = self._file.read(min(CHUNK, remaining))
                if not chunk:
                    break
                self._update(chunk)
                remaining -= len(chunk)
            self.offset = size - remaining
            self._file.seek(self.offset)
            self._file.truncate(self.offset)
        except OSError as exc:
            raise _disk_error(exc, str(self.partial)) from None
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._io:
            file = getattr(self, "_file", None)
            if file is not None:
                file.close()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _reset_hashes(self) -> None:
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(git_blob_header(self.expected.size))

    def _update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        if self.expected.git_oid and not self.expected.sha256:
            self._sha1.update(chunk)

    def restart(self) -> None:
        """The source ignored our Range request: start the file over."""
        self._file.seek(0)
        self._file.truncate(0)
        self.offset = 0
        self._reset_hashes()

    def write(self, chunk: bytes) -> None:
        if self.offset + len(chunk) > self.expected.size:
            self.discard()
            raise SizeMismatch(
                f"{self.expected.label}: source sent more than the declared "
                f"{self.expected.size} bytes"
            )
        with self._io:
            self._update(chunk)
            try:
                self._file.write(chunk)
            except OSError as exc:
                raise _disk_error(exc, self.expected.label) from None
            self.offset += len(chunk)

    def discard(self) -> None:
        """Drop the temp file: its bytes are known bad (the source lied or corrupted them)."""
        self._file.close()
        self.partial.unlink(missing_ok=True)

    def commit(self) -> str:
        """Check size and digests, then fsync and atomically publish the blob. Returns sha256."""
        exp = self.expected
        if self.offset != exp.size:
            raise SizeMismatch(f"{exp.label}: got {self.offset} bytes, source declared {exp.size}")
        digest = self._sha256.hexdigest()
        if exp.sha256 and digest != exp.sha256:
            self.discard()
            raise HashMismatch(f"{exp.label}: sha256 mismatch: expected {exp.sha256}, got {digest}")
        if exp.git_oid and not exp.sha256 and self._sha1.hexdigest() != exp.git_oid:
            self.discard()
            raise HashMismatch(
                f"{exp.label}: git blob sha1 mismatch: expected {exp.git_oid}, "
                f"got {self._sha1.hexdigest()}"
            )
        target = self.store.blob_path(digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self.partial, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.partial, target)
            _fsync_dir(target.parent)
            if exp.git_oid and not exp.sha256:
                self.store.remember_git_blob(exp.git_oid, digest)
        except OSError as exc:
            raise _disk_error(exc, exp.label) from None
        self.present = digest
        return digest


class Store:
    """Blobs, snapshot views and refs under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "tmp"
        self.snapshots_dir = root / "snapshots"
        self.refs_dir = root / "refs"
        self.git_index_dir = root / "blobs" / "git"
        self.signatures_dir = root / "signatures"

    @contextmanager
    def guard(self, *, exclusive: bool) -> Iterator[None]:
        """Mirrors hold this shared, gc exclusively: gc never deletes a blob not yet recorded."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def blob_path(self, sha256: str) -> Path:
        return self.blobs_dir / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def known_git_blob(self, git_oid: str | None) -> str | None:
        """sha256 of content stored earlier under this git oid (small non-LFS files)."""
        if not git_oid:
            return None
        try:
            return (self.git_index_dir / git_oid[:2] / git_oid).read_text().strip() or None
        except FileNotFoundError:
            return None

    def remember_git_blob(self, git_oid: str, sha256: str) -> None:
        path = self.git_index_dir / git_oid[:2] / git_oid
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        tmp.write_text(sha256)
        os.replace(tmp, path)

    def writer(self, expected: Expected) -> BlobWriter:
        return BlobWriter(self, expected)

    def snapshot_dir(self, repo_id: str, commit: str) -> Path:
        return self.snapshots_dir / repo_id / commit

    def link_snapshot(self, repo_id: str, commit: str, files: Iterable[tuple[str, str]]) -> Path:
        """Point ``snapshots/<repo>/<commit>/<path>`` at each blob, atomically per file."""
        base = self.snapshot_dir(repo_id, commit)
        try:
            for path, sha256 in files:
                link = base / safe_relpath(path)
                link.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_path(link)
                tmp.unlink(missing_ok=True)
                os.symlink(os.path.relpath(self.blob_path(sha256), link.parent), tmp)
                os.replace(tmp, link)
        except OSError as exc:
            raise _disk_error(exc, str(base)) from None
        return base

    def set_ref(self, repo_id: str, ref: str, commit: str) -> None:
        path = self.refs_dir / repo_id / safe_relpath(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        tmp.write_text(commit)
        os.replace(tmp, path)

    def get_ref(self, repo_id: str, ref: str) -> str | None:
        try:
            return (self.refs_dir / repo_id / safe_relpath(ref)).read_text().strip() or None
        except FileNotFoundError:
            return None

    def remove_snapshot(self, repo_id: str, commit: str) -> None:
        shutil.rmtree(self.snapshot_dir(repo_id, commit), ignore_errors=True)
        shutil.rmtree(self.signatures_dir / repo_id / commit, ignore_errors=True)
        refs = self.refs_dir / repo_id
        for ref in list(refs.rglob("*")) if refs.exists() else []:
            if ref.is_file() and ref.read_text().strip() == commit:
                ref.unlink()
        for directory in (self.snapshots_dir / repo_id, refs, self.signatures_dir / repo_id):
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        if not self.blobs_dir.exists():
            return
        for prefix in sorted(self.blobs_dir.iterdir()):
            for blob in sorted(prefix.iterdir()):
                yield blob.name, blob

    def collect_garbage(self, keep: set[str], partials: bool = False) -> tuple[int, int]:
        """Delete blobs not in ``keep`` (and interrupted transfers if asked): (count, bytes)."""
        count = freed = 0
        for digest, path in list(self.iter_blobs()):
            if digest not in keep:
                freed += path.stat().st_size
                path.unlink()
                count += 1
        if self.git_index_dir.exists():
            for entry in self.git_index_dir.rglob("*"):
                if entry.is_file() and entry.read_text().strip() not in keep:
                    entry.unlink()
        if partials and self.tmp_dir.exists():
            for partial in self.tmp_dir.glob("*.partial"):
                freed += partial.stat().st_size
                partial.unlink()
                count += 1
        return count, freed
