"""Repo references (``org/name[@revision]``) and the file names a source may send.

Everything that later becomes a path on disk passes through here first, so a hostile endpoint
cannot make hubd write outside its store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidReference, UnsafePath

# Matched with fullmatch: ``$`` would also match before a final newline.
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
OID = r"[0-9a-f]{40}"  # a git object id: a commit, a blob
SHA256 = r"[0-9a-f]{64}"
_OID = re.compile(OID)
_SHA256 = re.compile(SHA256)
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
# Longest name component and whole path most filesystems take (NAME_MAX, PATH_MAX), in bytes.
NAME_MAX = 255
PATH_MAX = 4096
# Text direction overrides and isolates: a name that reads differently from what it is.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


@dataclass(frozen=True)
class RepoRef:
    """A model repository on some endpoint, optionally pinned to a branch, tag or commit."""

    org: str
    name: str
    revision: str | None = None

    @property
    def repo_id(self) -> str:
        return f"{self.org}/{self.name}"

    def __str__(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"

    @classmethod
    def parse(cls, text: str, *, default_revision: str | None = None) -> RepoRef:
        """Parse ``org/name`` or ``org/name@revision``; reject anything that is not a repo id."""
        repo, sep, revision = text.partition("@")
        parts = repo.split("/")
        if not is_repo_id(repo):
            raise InvalidReference(
                f"not a repo id: {text!r}",
                hint="expected org/name or org/name@revision, e.g. mistralai/Mistral-7B-v0.1",
            )
        if sep:
            check_revision(revision)
        return cls(parts[0], parts[1], revision if sep else default_revision)


def check_revision(revision: str) -> str:
    """A branch, tag or commit: no '..', no leading '/', nothing a path could escape through."""
    if not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision:
        raise InvalidReference(f"not a revision: {revision!r}")
    return revision


def is_repo_id(text: str) -> bool:
    """``org/name`` and nothing else (no revision, no traversal)."""
    parts = text.split("/")
    return len(parts) == 2 and all(_PART.fullmatch(p) for p in parts) and ".." not in text


def is_commit(revision: str) -> bool:
    return bool(_OID.fullmatch(revision))


def is_git_oid(oid: str) -> bool:
    return bool(_OID.fullmatch(oid))


def is_sha256(digest: str) -> bool:
    return bool(_SHA256.fullmatch(digest))


def safe_relpath(path: str) -> str:
    """Return ``path`` if it is a plain relative POSIX path inside a repo, else raise UnsafePath.

    Beyond traversal: components a filesystem cannot hold (over NAME_MAX bytes), control
    characters and direction overrides (header injection, names that read as others), and
    ``.git`` components (a checkout of the snapshot would run them as hooks or config).
    """
    if not path or "\x00" in path or "\\" in path or path.startswith("/"):
        raise UnsafePath(f"unsafe file name {path!r}: no .., absolute paths, backslashes or NUL")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or re.match(r"[A-Za-z]:", path):
        raise UnsafePath(f"unsafe file name {path!r}: no .., absolute paths, backslashes or NUL")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _BIDI for c in path):
        raise UnsafePath(f"unsafe file name {path!r}: control or text-direction characters")
    if any(part.lower() == ".git" for part in parts):
        raise UnsafePath(f"unsafe file name {path!r}: no .git components")
    if len(path.encode()) > PATH_MAX or any(len(p.encode()) > NAME_MAX for p in parts):
        raise UnsafePath(
            f"unsafe file name {path[:80]!r}…: longer than {NAME_MAX} bytes a component "
            f"or {PATH_MAX} in all"
        )
    return path


def check_file_set(paths: Iterable[str]) -> None:
    """Refuse a file list no directory can hold: duplicates (also by case) or a file that is
    also a directory of another (``a`` and ``a/b``). Names must have passed safe_relpath."""
    seen: dict[str, str] = {}
    files: set[str] = set()
    for path in paths:
        folded = path.casefold()
        if folded in seen:
            what = "twice" if seen[folded] == path else f"and as {seen[folded]!r} (case)"
            raise UnsafePath(f"the file list names {path!r} {what}")
        seen[folded] = path
        files.add(path)
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafePath(
                    f"the file list names {'/'.join(parts[:i])!r} as a file and as the "
                    f"directory of {path!r}"
                )
