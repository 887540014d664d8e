"""Repo references (``org/name[@revision]``) and the file names a source may send.

Everything that later becomes a path on disk passes through here first, so a hostile endpoint
cannot make hubd write outside its store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference, UnsafePath

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


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
        if len(parts) != 2 or not all(_PART.match(p) for p in parts) or ".." in repo:
            raise InvalidReference(
                f"not a repo id: {text!r}",
                hint="expected org/name or org/name@revision, e.g. mistralai/Mistral-7B-v0.1",
            )
        if sep:
            check_revision(revision)
        return cls(parts[0], parts[1], revision if sep else default_revision)


def check_revision(revision: str) -> str:
    """A branch, tag or commit: no '..', no leading '/', nothing a path could escape through."""
    if not _REVISION.match(revision) or ".." in revision or "//" in revision:
        raise InvalidReference(f"not a revision: {revision!r}")
    return revision


def is_commit(revision: str) -> bool:
    return bool(_COMMIT.match(revision))


def safe_relpath(path: str) -> str:
    """Return ``path`` if it is a plain relative POSIX path inside a repo, else raise UnsafePath."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/"):
        raise UnsafePath(f"unsafe file name {path!r}: no .., absolute paths, backslashes or NUL")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or re.match(r"^[A-Za-z]:", path):
        raise UnsafePath(f"unsafe file name {path!r}: no .., absolute paths, backslashes or NUL")
    return path
