"""Verify before load: a full sha256 the first time, then a cheap (size, mtime, inode) check.

The record lives in the store, not the catalog: inode and mtime describe this node's disk, and a
catalog may be shared by several nodes. Any change to the blob file means a full re-hash.

The GGUF preflight's verdict is kept too, by the digests it judged: content-addressed blobs that
passed it once pass it again, so a warm ``hubd run`` neither imports gguf nor reads the headers.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import __version__
from ..errors import HashMismatch
from ..hashes import sha256_file
from ..store import Store, temp_path


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _record_path(store: Store, sha256: str) -> Path:
    return store.root / "verified" / sha256[:2] / sha256


def stamped(store: Store, sha256: str) -> bool:
    """Whether the blob still carries the stamp of its last full hash (never hashes)."""
    try:
        return bool(
            json.loads(_record_path(store, sha256).read_text()) == _stamp(store.blob_path(sha256))
        )
    except (OSError, ValueError):
        return False


def check_blob(store: Store, sha256: str, label: str) -> bool:
    """Raise HashMismatch unless the blob is intact; True when a full hash was needed.

    On object storage the blob is the local cache's copy, filled (and verified) first.
    """
    try:
        blob = store.local_blob(sha256)
        stamp = _stamp(blob)
    except FileNotFoundError:
        raise HashMismatch(f"{label}: the blob is missing from the store") from None
    record = _record_path(store, sha256)
    try:
        if json.loads(record.read_text()) == stamp:
            return False
    except (FileNotFoundError, ValueError):
        pass
    actual = sha256_file(blob)
    if actual != sha256:
        raise HashMismatch(
            f"{label}: sha256 mismatch on disk: expected {sha256}, got {actual}; refusing to load",
            hint="`hubd verify` lists damaged files; mirror the revision again to repair",
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(record)
    tmp.write_text(json.dumps(stamp))
    tmp.replace(record)
    return True


# Bump when the preflight checks change: verdicts kept under another version are not reused.
PREFLIGHT_VERSION = 1


def _preflight_path(store: Store, sha256s: list[str]) -> Path:
    key = "\0".join([__version__, str(PREFLIGHT_VERSION), *sha256s])
    digest = hashlib.sha256(key.encode()).hexdigest()
    return store.root / "verified" / "preflight" / digest


def preflighted(store: Store, sha256s: list[str]) -> bool:
    """Whether these blobs (model parts, then the LoRA) passed the preflight together before."""
    return _preflight_path(store, sha256s).exists()


def remember_preflight(store: Store, sha256s: list[str]) -> None:
    path = _preflight_path(store, sha256s)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text("ok\n")
    tmp.replace(path)


def check_blobs(store: Store, blobs: list[tuple[str, str]]) -> int:
    """Check (sha256, label) pairs in parallel, each blob once; returns how many needed a hash."""
    unique = dict(blobs)
    with ThreadPoolExecutor(max_workers=max(1, min(len(unique), os.cpu_count() or 1))) as pool:
        return sum(pool.map(lambda b: check_blob(store, *b), unique.items()))
