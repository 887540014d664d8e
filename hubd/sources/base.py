"""What a source tells hubd about a revision, and the progress events a transfer emits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..catalog.models import RefKind


@dataclass(frozen=True)
class RemoteFile:
    """A file as the source declares it; ``sha256`` is known up front only for LFS files."""

    path: str
    size: int
    git_oid: str | None
    sha256: str | None

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class RemoteRevision:
    repo_id: str
    commit: str
    endpoint: str
    files: tuple[RemoteFile, ...]
    gated: str | None = None
    card_data: dict[str, Any] = field(default_factory=dict)
    ref_kind: RefKind | None = None  # of the ref resolved, where the source's refs API said


@dataclass(frozen=True)
class Attestations:
    """What a hubd node (or a bundle) vouches for a revision with, beside its bytes."""

    origin: str  # who carried them, for messages: a peer URL, a bundle file
    hops: list[dict[str, str]]  # its catalog's chain of custody
    signatures: dict[str, bytes]  # OMS bundles by file name
    statements: list[dict[str, Any]]  # DSSE envelopes of SLSA provenance, in hop order


class Progress(Protocol):
    """Transfer events; the CLI draws bars from them, the daemon will record job progress."""

    def begin(self, files: int, total_bytes: int) -> None: ...

    def file_started(self, path: str, size: int, offset: int) -> None: ...

    def advance(self, path: str, nbytes: int) -> None: ...

    def file_done(self, path: str) -> None: ...

    def end(self) -> None: ...


class NullProgress:
    def begin(self, files: int, total_bytes: int) -> None:
        pass

    def file_started(self, path: str, size: int, offset: int) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def file_done(self, path: str) -> None:
        pass

    def end(self) -> None:
        pass
