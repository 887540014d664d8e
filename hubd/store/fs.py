"""The content-addressed store on disk (``[store] backend = "fs"``), and the blob-store interface.

:class:`Store` is the interface every reader and writer of blobs goes through (mirror, publish,
import, export, verify, repair, gc, serving, runtime): ``writer`` (hash, verify, publish),
``has_blob``, ``open_blob`` (a local descriptor), ``open_read`` (a stream), ``local_blob`` (a
local path of verified content), ``digest_of``, ``adopt``, ``quarantine``, ``iter_blobs``,
``collect_garbage``. :class:`hubd.store.s3.S3Store` implements the same methods on object
storage; snapshots, refs, signatures and the git-blob index stay on local disk in both.

Layout under ``store_dir``::

    blobs/sha256/ab/<digest>              every distinct content once, read-only
    tmp/<key>.partial, tmp/<key>.lock     a transfer in progress (kept across crashes: resume)
    snapshots/<org>/<name>/<commit>/<path> -> relative symlink to the blob (original names)
    refs/<org>/<name>/<branch-or-tag>     the commit a ref pointed at when last mirrored
    signatures/<org>/<name>/<commit>/<key-hint>.sig   OMS bundles (hubd.trust.keys)

A blob only ever appears by ``os.replace`` of a fully written, fsynced and verified temp file,
so a crash leaves either nothing or a ``.partial`` to resume, never a wrong blob.

The store defends itself as well as its callers do: every path it builds from a digest, commit,
repo id or ref is checked to be one (and to stay under ``root``) before use, and blobs are read
without following links, so nothing outside the store is ever written, linked or served.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

from ..errors import HashMismatch, SizeMismatch, StoreError, UnsafePath
from ..hashes import CHUNK, git_blob_header
from ..refs import is_commit, is_git_oid, is_repo_id, is_sha256, safe_relpath

MAP_WINDOW = 64 * 1024 * 1024  # bytes of a blob mapped at once while it is hashed


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


def check_sha256(digest: str) -> str:
    if not is_sha256(digest):
        raise UnsafePath(f"not a sha256 digest: {digest[:80]!r}")
    return digest


def check_repo_id(repo_id: str) -> str:
    if not is_repo_id(repo_id):
        raise UnsafePath(f"not a repo id: {repo_id[:80]!r}")
    return repo_id


def check_commit(commit: str) -> str:
    if not is_commit(commit):
        raise UnsafePath(f"not a commit id: {commit[:80]!r}")
    return commit


def open_regular(path: Path) -> int:
    """A descriptor on ``path`` if it is a regular file; neither it nor its directory a link.

    O_NONBLOCK: a FIFO planted where a file goes must not hang the open.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    parent = os.open(path.parent, flags | os.O_DIRECTORY)
    try:
        fd = os.open(path.name, flags, dir_fd=parent)
    finally:
        os.close(parent)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def stream_digest(blob: BinaryIO) -> str:
    """sha256 of what ``blob`` yields, then closed (hashlib drops the GIL: threads use cores).

    A regular file is hashed through memory maps of MAP_WINDOW bytes: no copy into Python
    objects, so one thread hashes at hashlib's own rate (1.6 GB/s here against 1.0-1.3 by
    reads); other streams (an object store's body) are read in chunks. (A file truncated while
    mapped would fault; blobs are read-only and only ever replaced whole.)
    """
    digest = hashlib.sha256()
    with blob:
        try:
            info: os.stat_result | None = os.fstat(blob.fileno())
        except (AttributeError, OSError, ValueError):  # no descriptor: a stream
            info = None
        if info is not None and stat.S_ISREG(info.st_mode) and blob.tell() == 0:
            for offset in range(0, info.st_size, MAP_WINDOW):
                length = min(MAP_WINDOW, info.st_size - offset)
                with mmap.mmap(blob.fileno(), length, access=mmap.ACCESS_READ, offset=offset) as m:
                    digest.update(m)
            return digest.hexdigest()
        while chunk := blob.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


WRITEBACK = 32 * 1024 * 1024  # bytes written between two asks to start writing them to disk
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range, do not wait


@cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2), which the os module lacks; None where libc has none."""
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", func)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing these bytes to disk now, without waiting for it: the
    fsync before a blob is published then finds little left, and a download limited by the
    disk overlaps its writes with the network instead of paying for them all at the end."""
    func = _sync_file_range()
    if func is not None:
        func(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # advisory: a failure costs nothing


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
        """Temp-file name: the sha256 when known (LFS), else the git oid; checked to be one."""
        if self.sha256:
            return check_sha256(self.sha256)
        if self.git_oid and is_git_oid(self.git_oid):
            return f"git-{self.git_oid}"
        raise UnsafePath(f"{self.label}: no sha256 or git blob id to store it under")


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
        self._written_back = 0  # offset up to which writeback was started
        self.present: str | None = None
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(usedforsecurity=False)

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
            self._file = self.partial.open("ab+")  # closed in __exit__
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
            self.offset = self._written_back = size - remaining
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
        self._sha1 = hashlib.sha1(git_blob_header(self.expected.size), usedforsecurity=False)

    def _update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        if self.expected.git_oid and not self.expected.sha256:
            self._sha1.update(chunk)

    def restart(self) -> None:
        """The source ignored our Range request: start the file over."""
        self._file.seek(0)
        self._file.truncate(0)
        self.offset = self._written_back = 0
        self._reset_hashes()

    def _refuse_overflow(self, chunk: bytes) -> None:
        """More bytes than declared: discarded at once, before any is kept."""
        if self.offset + len(chunk) > self.expected.size:
            self.discard()
            raise SizeMismatch(
                f"{self.expected.label}: source sent more than the declared "
                f"{self.expected.size} bytes"
            )

    def write(self, chunk: bytes) -> None:
        self._refuse_overflow(chunk)
        with self._io:
            self._update(chunk)
            try:
                self._file.write(chunk)
                self.offset += len(chunk)
                if self.offset - self._written_back >= WRITEBACK:
                    self._file.flush()
                    _start_writeback(
                        self._file.fileno(), self._written_back, self.offset - self._written_back
                    )
                    self._written_back = self.offset
            except OSError as exc:
                raise _disk_error(exc, self.expected.label) from None

    def discard(self) -> None:
        """Drop the temp file: its bytes are known bad (the source lied or corrupted them)."""
        self._file.close()
        self.partial.unlink(missing_ok=True)

    def verified_digest(self) -> str:
        """The sha256 of what was written, once size and digests match what was declared;
        else the bytes are discarded and the mismatch raised."""
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
        return digest

    def commit(self) -> str:
        """Check size and digests, then fsync and atomically publish the blob. Returns sha256."""
        exp = self.expected
        digest = self.verified_digest()
        target = self.store.blob_path(digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.partial.chmod(0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.partial.replace(target)
            _fsync_dir(target.parent)
            if exp.git_oid and not exp.sha256:
                self.store.remember_git_blob(exp.git_oid, digest)
        except OSError as exc:
            raise _disk_error(exc, exp.label) from None
        self.present = digest
        return digest


class Store:
    """Blobs, snapshot views and refs under one directory."""

    # Blobs are files under ``root`` (False on object storage: no free-space check, no hard links).
    local_blobs = True

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
        check_sha256(sha256)
        return self.blobs_dir / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        """A regular file (not a link, not a directory) of ``size`` bytes holds ``sha256``."""
        try:
            st = self.blob_path(sha256).lstat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

    def open_blob(self, sha256: str) -> int:
        """A descriptor on the blob, refusing links and anything but a regular file."""
        return open_regular(self.blob_path(sha256))

    def open_read(self, sha256: str) -> BinaryIO:
        """The blob's bytes as a stream (FileNotFoundError if it is not stored)."""
        return os.fdopen(self.open_blob(sha256), "rb")

    def local_blob(self, sha256: str) -> Path:
        """A local path of the verified blob, for readers that need a file (llama.cpp, GGUF)."""
        if not self.has_blob(sha256):
            raise FileNotFoundError(errno.ENOENT, "blob not in the store", sha256)
        return self.blob_path(sha256)

    def digest_of(self, sha256: str) -> str | None:
        """The blob's sha256 as read now; None if it is missing or not a regular file."""
        try:
            blob = self.open_read(sha256)
        except OSError:
            return None
        return stream_digest(blob)

    def presigned_url(self, sha256: str) -> str | None:
        """A short-lived URL a client may download the blob from directly; None on disk."""
        return None

    def adopt(self, path: Path, sha256: str, size: int) -> None:
        """Publish ``path``, a file already verified to hold ``sha256`` (an import's staging)."""
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)

    def quarantine(self, sha256: str, target: Path) -> bool:
        """Move a damaged blob out of ``blobs/`` to ``target``; False if it is already gone."""
        try:
            self.blob_path(sha256).replace(target)
        except FileNotFoundError:
            return False
        return True

    def _git_index_path(self, git_oid: str) -> Path:
        if not is_git_oid(git_oid):
            raise UnsafePath(f"not a git blob id: {git_oid[:80]!r}")
        return self.git_index_dir / git_oid[:2] / git_oid

    def known_git_blob(self, git_oid: str | None) -> str | None:
        """sha256 of content stored earlier under this git oid (small non-LFS files)."""
        if not git_oid:
            return None
        try:
            fd = open_regular(self._git_index_path(git_oid))
        except OSError:
            return None
        with os.fdopen(fd) as entry:
            digest = entry.read(65).strip()
        return digest if is_sha256(digest) else None

    def remember_git_blob(self, git_oid: str, sha256: str) -> None:
        path = self._git_index_path(git_oid)
        check_sha256(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        tmp.write_text(sha256)
        tmp.replace(path)

    def writer(self, expected: Expected) -> BlobWriter:
        return BlobWriter(self, expected)

    def snapshot_dir(self, repo_id: str, commit: str) -> Path:
        return self.snapshots_dir / check_repo_id(repo_id) / check_commit(commit)

    def signature_dir(self, repo_id: str, commit: str) -> Path:
        return self.signatures_dir / check_repo_id(repo_id) / check_commit(commit)

    def ref_path(self, repo_id: str, ref: str) -> Path:
        return self.refs_dir / check_repo_id(repo_id) / safe_relpath(ref)

    def link_snapshot(self, repo_id: str, commit: str, files: Iterable[tuple[str, str]]) -> Path:
        """Point ``snapshots/<repo>/<commit>/<path>`` at each blob, atomically per file."""
        base = self.snapshot_dir(repo_id, commit)
        try:
            for path, sha256 in files:
                link = base / safe_relpath(path)
                link.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_path(link)
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(os.path.relpath(self.blob_path(sha256), link.parent))
                tmp.replace(link)
        except OSError as exc:
            raise _disk_error(exc, str(base)) from None
        return base

    def set_ref(self, repo_id: str, ref: str, commit: str) -> None:
        check_commit(commit)
        path = self.ref_path(repo_id, ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        tmp.write_text(commit)
        tmp.replace(path)

    def get_ref(self, repo_id: str, ref: str) -> str | None:
        try:
            return self.ref_path(repo_id, ref).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def remove_snapshot(self, repo_id: str, commit: str) -> None:
        """Remove a revision's links, signatures and the refs naming it; only under the store."""
        shutil.rmtree(self.snapshot_dir(repo_id, commit), ignore_errors=True)
        shutil.rmtree(self.signature_dir(repo_id, commit), ignore_errors=True)
        refs = self.refs_dir / repo_id
        for ref in list(refs.rglob("*")) if refs.exists() else []:
            if ref.is_file() and not ref.is_symlink() and ref.read_text().strip() == commit:
                ref.unlink()
        for directory in (self.snapshots_dir / repo_id, refs, self.signatures_dir / repo_id):
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every blob: a regular file named by its digest in the directory of its prefix."""
        for path in self._blob_entries():
            if self._is_blob(path):
                yield path.name, path

    def strays(self) -> list[Path]:
        """Entries under blobs/sha256 that are not blobs (links, odd names, directories)."""
        return [path for path in self._blob_entries() if not self._is_blob(path)]

    def _blob_entries(self) -> Iterator[Path]:
        if not self.blobs_dir.is_dir():
            return
        for prefix in sorted(self.blobs_dir.iterdir()):
            if prefix.is_symlink() or not prefix.is_dir():
                yield prefix
                continue
            yield from sorted(prefix.iterdir())

    @staticmethod
    def _is_blob(path: Path) -> bool:
        return (
            is_sha256(path.name)
            and path.parent.name == path.name[:2]
            and stat.S_ISREG(path.lstat().st_mode)
        )

    def collect_garbage(self, keep: set[str], partials: bool = False) -> tuple[int, int]:
        """Delete blobs not in ``keep`` (and interrupted transfers if asked): (count, bytes).

        Run under the exclusive guard, so no transfer of this store is in progress: lock files
        without a partial are orphans, and so is the staging directory of an import whose
        process is gone. Strays (see :meth:`strays`) are left for a person to look at.
        """
        count = freed = 0
        for digest, path in list(self.iter_blobs()):
            if digest not in keep:
                freed += path.stat().st_size
                path.unlink()
                count += 1
        more, extra = self._collect_local(keep, partials)
        return count + more, freed + extra

    def _collect_local(self, keep: set[str], partials: bool) -> tuple[int, int]:
        """The git-blob index, partials, orphan locks and dead imports' staging: (count, bytes)."""
        count = freed = 0
        if self.git_index_dir.is_dir():
            for entry in self.git_index_dir.rglob("*"):
                if entry.is_symlink() or (
                    entry.is_file() and self.known_git_blob(entry.name) not in keep
                ):
                    entry.unlink()
        if not self.tmp_dir.is_dir():
            return count, freed
        if partials:
            for partial in self.tmp_dir.glob("*.partial"):
                freed += partial.lstat().st_size
                partial.unlink()
                count += 1
        for lock in self.tmp_dir.glob("*.lock"):
            if not lock.with_suffix(".partial").exists() and _unheld(lock):
                lock.unlink(missing_ok=True)
        for staging in self.tmp_dir.glob("import-*"):
            if staging.is_dir() and not staging.is_symlink() and not _alive(staging.name):
                freed += sum(f.lstat().st_size for f in staging.rglob("*") if f.is_file())
                shutil.rmtree(staging, ignore_errors=True)
                count += 1
        return count, freed


def _alive(name: str) -> bool:
    """Whether the process whose pid is the second field of ``name`` (kind-pid-…) still runs."""
    try:
        pid = int(name.split("-")[1])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _unheld(lock: Path) -> bool:
    """No process holds the lock (a transfer in progress would)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
