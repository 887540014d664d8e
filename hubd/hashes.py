"""Digests hubd checks: sha256 of content, and git's blob sha1 (what the Hub calls a file's oid)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1024 * 1024


def git_blob_header(size: int) -> bytes:
    return b"blob %d\x00" % size


def git_blob_sha1(data: bytes) -> str:
    """Git's blob id: sha1 because git defines it so, an identifier rather than hubd's choice."""
    return hashlib.sha1(git_blob_header(len(data)) + data, usedforsecurity=False).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file; hashlib releases the GIL, so threads hash on every core."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file whose blob sha1 is an LFS file's oid on the Hub."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )
