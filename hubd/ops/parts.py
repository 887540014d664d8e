"""Multipart LFS uploads: parts staged in the store's tmp dir, joined through the hashing writer.

A large file arrives as numbered parts of ``PART_SIZE`` bytes (the LFS batch answer's
``chunk_size``). Each part is written to a temp file and renamed into place, so a part is either
whole or absent, and its sha256 is its ETag. The completion joins the parts, in order, through
the store's hashing writer: the blob appears only if the whole is the declared sha256 and size;
either way the staged parts go. A client killed mid-way leaves whole parts behind, which a
re-run replaces; ``discard_stale`` drops parts nobody completed.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import HashMismatch, InvalidRequest, SizeMismatch
from ..hashes import CHUNK
from ..store import Expected, Store, check_sha256

PART_SIZE = 16 * 1024 * 1024
MULTIPART_MIN = 64 * 1024 * 1024  # smaller files go in one PUT
STALE_AFTER = 24 * 3600


def part_count(size: int) -> int:
    return max(1, math.ceil(size / PART_SIZE))


def part_length(size: int, number: int) -> int:
    """The byte count of part ``number`` (1-based) of a ``size``-byte file."""
    if not 1 <= number <= part_count(size):
        raise InvalidRequest(f"part {number} of a {size}-byte upload does not exist")
    return min(PART_SIZE, size - (number - 1) * PART_SIZE)


def parts_dir(store: Store, sha256: str) -> Path:
    return store.tmp_dir / f"{check_sha256(sha256)}.parts"


def stage_part(store: Store, sha256: str, size: int, number: int, chunks: Iterable[bytes]) -> str:
    """Write one part (blocking), exactly its length, whole or not at all: its sha256 (ETag)."""
    expected = part_length(size, number)
    directory = parts_dir(store, sha256)
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f"{number}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    digest, written = hashlib.sha256(), 0
    try:
        with temp.open("wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > expected:
                    raise InvalidRequest(f"part {number} is longer than its {expected} bytes")
                digest.update(chunk)
                out.write(chunk)
            if written != expected:
                raise InvalidRequest(f"part {number} is {written} bytes, not {expected}")
            out.flush()
            os.fsync(out.fileno())
        temp.replace(directory / str(number))
    finally:
        temp.unlink(missing_ok=True)
    return digest.hexdigest()


def complete(store: Store, sha256: str, size: int, etags: dict[int, str]) -> None:
    """Join the staged parts into the blob (blocking); 400 unless it is sha256 and size."""
    directory = parts_dir(store, sha256)
    try:
        if sorted(etags) != list(range(1, part_count(size) + 1)):
            raise InvalidRequest(f"a {size}-byte upload has parts 1 to {part_count(size)}")
        with store.writer(Expected(f"upload {sha256}", size, sha256)) as writer:
            if writer.present is not None:
                return
            writer.restart()
            try:
                for number in sorted(etags):
                    part = hashlib.sha256()
                    with (directory / str(number)).open("rb") as staged:
                        while chunk := staged.read(CHUNK):
                            part.update(chunk)
                            writer.write(chunk)
                    if part.hexdigest() != etags[number].strip('"'):
                        raise InvalidRequest(f"part {number} is not the one its ETag names")
                writer.commit()
            except FileNotFoundError:
                writer.discard()
                raise InvalidRequest("a part of this upload was never received") from None
            except (HashMismatch, SizeMismatch) as exc:
                writer.discard()
                raise InvalidRequest(f"upload refused, nothing kept: {exc.message}") from None
            except BaseException:
                writer.discard()
                raise
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def discard_stale(store: Store, older_than: float = STALE_AFTER) -> int:
    """Remove staged parts of uploads untouched for ``older_than`` seconds: how many."""
    removed = 0
    for directory in store.tmp_dir.glob("*.parts"):
        if time.time() - directory.stat().st_mtime > older_than:
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    return removed
