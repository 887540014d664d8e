"""Which GGUF file(s) of a revision to run: a pattern, else Q4_K_M, else the smallest.

A split model (``name-00001-of-00003.gguf``) is one choice; it loads from its first part and
every part must be in the revision.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import EntryNotFound

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class GgufFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class GgufChoice:
    """One loadable model file, or the parts of a split one in order."""

    parts: tuple[GgufFile, ...]

    @property
    def name(self) -> str:
        return self.parts[0].path

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def group_gguf(files: Sequence[GgufFile]) -> list[GgufChoice]:
    """Group split parts; a split model missing a part is refused, not silently skipped."""
    singles: list[GgufChoice] = []
    splits: dict[str, dict[int, GgufFile]] = {}
    counts: dict[str, int] = {}
    for f in files:
        match = _SPLIT.match(f.path)
        if match is None:
            singles.append(GgufChoice((f,)))
            continue
        stem = match["stem"]
        splits.setdefault(stem, {})[int(match["index"])] = f
        counts[stem] = int(match["count"])
    for stem, parts in splits.items():
        missing = [i for i in range(1, counts[stem] + 1) if i not in parts]
        if missing:
            raise EntryNotFound(
                f"split GGUF {stem}: part(s) {missing} of {counts[stem]} are not in this revision",
                hint="mirror every part, e.g. --include '" + stem + "-*.gguf'",
            )
        singles.append(GgufChoice(tuple(parts[i] for i in sorted(parts))))
    return sorted(singles, key=lambda c: c.name)


def choose(files: Sequence[GgufFile], pattern: str | None, what: str) -> GgufChoice:
    """The file to load from ``files`` (all .gguf files of a revision)."""
    choices = group_gguf(files)
    if pattern:
        choices = [c for c in choices if any(fnmatch.fnmatch(p.path, pattern) for p in c.parts)]
        if not choices:
            raise EntryNotFound(
                f"no GGUF file in {what} matches {pattern!r}",
                hint="files: " + ", ".join(f.path for f in files),
            )
    if not choices:
        raise EntryNotFound(f"{what} has no GGUF file")
    preferred = [c for c in choices if "q4_k_m" in c.name.lower()]
    return min(preferred or choices, key=lambda c: (c.size, c.name))
