"""What `hubd run` resolved for one request, kept so the next run loads before the catalog opens.

A warm ``hubd run`` spent its start-up importing the catalog (SQLAlchemy), the trust stack
(cryptography) and the GGUF reader only to reach the answer it reached last time. The answer
(``Prepared``) is kept here, in the store beside the blob stamps, keyed by the request, and
reused while nothing it rests on has changed:

- every named ref still points at the commit (the store's ref file: a mirror that moves the
  ref rewrites it);
- every blob still carries the (size, mtime, inode) stamp of its last full hash, and the
  snapshot paths still lead to those blobs (`hubd rm` removes the snapshot);
- the trust store, the node's keys and the revisions' signature folders list the same files
  with the same sizes and times (a new key, rule or signature is a new verdict to reach).

A revision under a trust rule naming signers is never kept: a CA certificate's validity is a
matter of the clock, so its verdict is reached afresh on every run. Anything missing, changed
or unreadable means the whole path runs again and writes a new record. The record describes
this node's disk, so it never lives in a (possibly shared) catalog.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .loadcheck import stamped

if TYPE_CHECKING:
    from ..store import Store

# Bump when what a record rests on changes: records kept under another version are ignored.
READY_VERSION = 1


@dataclass(frozen=True)
class Prepared:
    """Verified, preflighted paths for llama.cpp, and where they came from."""

    repo: str
    commit: str
    model: Path
    lora: Path | None
    lora_repo: str | None
    full_hashes: int


@dataclass(frozen=True)
class Basis:
    """What one kept answer rests on (see the module docstring)."""

    refs: list[tuple[str, str, str]]  # (repo, ref name, commit) for each named ref
    links: list[tuple[str, str]]  # (snapshot path, sha256 of the blob it must lead to)
    watched: list[str]  # folders whose listing is part of the trust verdict


def request_key(repo: str | None, pattern: str | None, lora: str | None) -> str:
    return hashlib.sha256(json.dumps([READY_VERSION, repo, pattern, lora]).encode()).hexdigest()


def _path(store: Store, key: str) -> Path:
    return store.root / "verified" / "ready" / key


def _listing(folder: str) -> list[list[object]]:
    """(name, size, mtime) of each entry of ``folder``, sorted; [] when it does not exist."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    return sorted(
        [e.name, e.stat(follow_symlinks=False).st_size, e.stat(follow_symlinks=False).st_mtime_ns]
        for e in entries
    )


def remember(store: Store, key: str, prepared: Prepared, basis: Basis) -> None:
    """Keep ``prepared`` for ``key`` with what it rests on (written atomically)."""
    from ..store import temp_path

    body = {
        "version": READY_VERSION,
        "prepared": {k: None if v is None else str(v) for k, v in asdict(prepared).items()},
        "refs": basis.refs,
        "links": basis.links,
        "watched": {folder: _listing(folder) for folder in basis.watched},
    }
    path = _path(store, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def recall(store: Store, key: str) -> Prepared | None:
    """The answer kept for ``key`` if nothing it rests on changed; None sends the caller the long
    way. Never hashes: a blob whose stamp moved is the long way's to re-check."""
    try:
        body = json.loads(_path(store, key).read_text())
        if body["version"] != READY_VERSION:
            return None
        if not _holds(store, body["refs"], body["links"], body["watched"]):
            return None
        kept = body["prepared"]
        return Prepared(
            repo=kept["repo"],
            commit=kept["commit"],
            model=Path(kept["model"]),
            lora=Path(kept["lora"]) if kept["lora"] else None,
            lora_repo=kept["lora_repo"],
            full_hashes=0,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _holds(
    store: Store,
    refs: Iterable[Sequence[str]],
    links: Iterable[Sequence[str]],
    watched: dict[str, object],
) -> bool:
    if any(store.get_ref(repo, name) != commit for repo, name, commit in refs):
        return False
    for link, sha256 in links:
        if not stamped(store, sha256):
            return False
        if os.path.realpath(link) != os.path.realpath(store.blob_path(sha256)):
            return False
    return all(_listing(folder) == listing for folder, listing in watched.items())
