"""Free-space checks before writing to the store: refuse up front rather than fill the disk.

A disk that fills mid-way leaves partials, fails with whatever file happened to be last, and may
starve the catalog or other writers on the same filesystem; a count before the first byte costs
one ``statvfs``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import StoreError
from ..sources.base import RemoteFile
from ..store import Expected, Store


def require_free(root: Path, needed: int, what: str, hint: str) -> None:
    """Raise StoreError (exit 8) if ``needed`` bytes exceed the free space under ``root``."""
    free = shutil.disk_usage(root).free
    if needed > free:
        raise StoreError(f"{what} need {needed} bytes; the store has {free} free", hint=hint)


def check_mirror_space(store: Store, label: str, items: Iterable[RemoteFile]) -> None:
    """Refuse a mirror whose files to fetch cannot fit; bytes of a partial to resume are there.

    Blobs in object storage take no local space (the bucket's quota is the store's to tell).
    """
    if not store.local_blobs:
        return
    needed = 0
    for item in items:
        have = 0
        partial = store.writer(Expected(label, item.size, item.sha256, item.git_oid)).partial
        with contextlib.suppress(OSError):
            have = partial.stat().st_size
        needed += max(item.size - have, 0)
    require_free(
        store.root,
        needed,
        f"{label}: the files to fetch",
        hint="free space (or `hubd gc`) and mirror again; nothing was fetched",
    )
