"""Git tree and commit objects: the ids hubd gives a revision it was handed, as git computes them.

A commit pushed through the Hub's write API gets the id git would give the same tree, parent,
author and message, so ``X-Repo-Commit``, refs, commit lists and any other node mirroring the
repo agree on it. sha1 because git defines the ids so: identifiers, not hubd's integrity check
(that is every blob's sha256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FILE_MODE = b"100644"
TREE_MODE = b"40000"


def git_object_id(kind: str, body: bytes) -> str:
    """The id of a git object: sha1 of ``<kind> <size>\\0`` and the body."""
    header = b"%s %d\x00" % (kind.encode(), len(body))
    return hashlib.sha1(header + body, usedforsecurity=False).hexdigest()


def tree_id(blobs: Mapping[str, str]) -> str:
    """The root tree id of files given as {path: git blob id}, directories nested as git does.

    Entries sort by name, a directory's name compared as if it ended in '/' (git's order).
    """
    files: dict[str, str] = {}
    directories: dict[str, dict[str, str]] = {}
    for path, oid in blobs.items():
        head, _, rest = path.partition("/")
        if rest:
            directories.setdefault(head, {})[rest] = oid
        else:
            files[head] = oid
    entries: list[tuple[bytes, bytes, str]] = [
        (name.encode(), FILE_MODE, oid) for name, oid in files.items()
    ]
    entries += [(name.encode(), TREE_MODE, tree_id(sub)) for name, sub in directories.items()]
    entries.sort(key=lambda e: e[0] + (b"/" if e[1] == TREE_MODE else b""))
    body = b"".join(
        mode + b" " + name + b"\x00" + bytes.fromhex(oid) for name, mode, oid in entries
    )
    return git_object_id("tree", body)


@dataclass(frozen=True)
class Signature:
    """Who made a commit and when, as git records it (UTC, whole seconds)."""

    name: str
    email: str
    timestamp: int

    def line(self) -> bytes:
        return f"{self.name} <{self.email}> {self.timestamp} +0000".encode()


def commit_id(tree: str, parents: Sequence[str], author: Signature, message: str) -> str:
    """The id of the commit object of ``tree`` (author = committer), as `git commit-tree`."""
    lines = [b"tree " + tree.encode()]
    lines += [b"parent " + parent.encode() for parent in parents]
    lines += [b"author " + author.line(), b"committer " + author.line()]
    text = message if message.endswith("\n") else message + "\n"
    return git_object_id("commit", b"\n".join(lines) + b"\n\n" + text.encode())
