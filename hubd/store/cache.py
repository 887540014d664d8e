"""A bounded local copy of blobs kept in object storage (``[store] cache.path``, ``max_size``).

llama.cpp mmaps a file, a GGUF header or an adapter config is read by path, and hot files are
served more often than once: those blobs are copied here from the object store. The layout is
the filesystem store's (``blobs/sha256/ab/<digest>``), so the snapshot links of a node on S3
point into the cache and ``hubd run`` finds its files where it always did.

A blob appears here only by ``os.replace`` of a temp file whose size and sha256 were checked on
the way in, read-only; what was verified once is then re-checked by the runtime's size/mtime
stamp. Least recently used blobs go first when ``max_size`` is exceeded: a use sets the atime
explicitly (mounts are often ``relatime``) and leaves the mtime the stamp relies on alone. A
copy used in the last ``IN_USE`` seconds is never evicted (the cache may exceed its bound for
that long): a model and its LoRA are verified one after the other, then loaded together.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import HashMismatch, SizeMismatch, StoreError
from ..refs import is_sha256
from .fs import check_sha256, temp_path

IN_USE = 600.0


class BlobCache:
    """Verified copies under ``root/blobs/sha256``, at most ``max_size`` bytes (None: unbounded)."""

    def __init__(self, root: Path, max_size: int | None) -> None:
        self.root = root
        self.blobs_dir = root / "blobs" / "sha256"
        self.max_size = max_size

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.blobs_dir / sha256[:2] / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached copy (a regular file, not a link), marked as just used; None if absent."""
        path = self.path(sha256)
        try:
            st = path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        with contextlib.suppress(OSError):
            os.utime(path, ns=(time.time_ns(), st.st_mtime_ns), follow_symlinks=False)
        return path

    def fill(self, sha256: str, size: int, chunks: Iterable[bytes]) -> Path:
        """Copy a blob in from ``chunks``, checking size and digest before it becomes visible."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        locks = self.root / "tmp"  # the store's: gc removes the locks no process holds
        locks.mkdir(parents=True, exist_ok=True)
        lock = os.open(locks / f"cache-{sha256}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one copy per blob, however many readers wait
            present = self.get(sha256)
            if present is not None:
                return present
            tmp = temp_path(target)
            digest, count = hashlib.sha256(), 0
            try:
                with tmp.open("wb") as out:
                    for chunk in chunks:
                        digest.update(chunk)
                        count += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if count != size:
                    raise SizeMismatch(f"blob {sha256}: object store sent {count} of {size} bytes")
                if digest.hexdigest() != sha256:
                    raise HashMismatch(
                        f"blob {sha256}: the object store holds other bytes "
                        f"(sha256 {digest.hexdigest()})",
                        hint="`hubd verify --repair` fetches it again from a source",
                    )
                tmp.chmod(0o444)
                tmp.replace(target)
            except OSError as exc:
                raise StoreError(f"cannot cache blob {sha256}: {exc.strerror or exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
        finally:
            os.close(lock)
        self.evict(keep=sha256)
        return target

    def evict(self, keep: str | None = None) -> int:
        """Delete least recently used copies until the cache fits ``max_size``; bytes freed."""
        if self.max_size is None or not self.blobs_dir.is_dir():
            return 0
        entries = []
        for path in self.blobs_dir.glob("*/*"):
            with contextlib.suppress(OSError):
                st = path.lstat()
                if is_sha256(path.name) and stat.S_ISREG(st.st_mode):
                    entries.append((st.st_atime_ns, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        freed = 0
        recent = time.time_ns() - int(IN_USE * 1e9)
        for used, size, path in sorted(entries):
            if total <= self.max_size or used > recent:
                break
            if path.name == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            freed += size
        return freed

    def drop(self, sha256: str) -> None:
        """Forget a copy (its object was deleted or found damaged)."""
        self.path(sha256).unlink(missing_ok=True)
