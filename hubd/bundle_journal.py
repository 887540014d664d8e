"""What a failed import must put back in the store: the files its commit wrote.

hubd import checks everything before it writes; what can still fail is the writing itself (a
full disk, a card or file a revision's recording refuses). The catalog side needs no help: all
the revisions are recorded in one transaction, which a failure rolls back. The store side is
files: the journal notes, before the first write, every path the commit may touch (blobs, git
index entries, snapshot links, refs, signature files) and puts them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .bundle import IndexRevision
from .catalog.queries import find_revision
from .context import Context
from .verify.keys import signature_dir, write_atomic


@dataclass
class _Before:
    """A revision's store files as they were before the import touched them."""

    existed: bool  # in the catalog: its snapshot is this node's to keep
    signatures: dict[str, bytes]  # the signature directory's files


class Journal:
    """Enough of the store as it was to undo a failed commit exactly."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.revisions: dict[tuple[str, str], _Before] = {}
        self.refs: dict[tuple[str, str], str | None] = {}  # the ref file's commit before
        self.created: list[Path] = []  # blobs and git index entries
        self.links: list[Path] = []  # snapshot links added to existing revisions
        self.fresh_dirs: set[Path] = set()

    def watch(self, directory: Path) -> None:
        """Note ``directory`` and those above it that do not exist yet (removed on undo)."""
        root = self.ctx.store.root
        for parent in [directory, *directory.parents]:
            if root not in parent.parents or parent.exists():
                break
            self.fresh_dirs.add(parent)

    def remember(self, changes: Sequence[tuple[IndexRevision, Sequence[str]]]) -> None:
        """Note each revision's files and ``refs`` (the ones it moves) before commit."""
        store = self.ctx.store
        with self.ctx.catalog() as session:
            for rev, refs in changes:
                row = find_revision(session, rev.repo, rev.commit)
                known = {f.path for f in row.files} if row else set()
                sig_dir = signature_dir(self.ctx, rev.repo, rev.commit)
                self.revisions[(rev.repo, rev.commit)] = _Before(
                    existed=row is not None,
                    signatures={p.name: p.read_bytes() for p in sig_dir.glob("*") if p.is_file()}
                    if sig_dir.is_dir()
                    else {},
                )
                snapshot = store.snapshot_dir(rev.repo, rev.commit)
                self.watch(snapshot)
                self.watch(sig_dir)
                for f in rev.files:
                    if row is not None and f.path not in known:
                        self.watch((snapshot / f.path).parent)
                        self.links.append(snapshot / f.path)
                for name in refs:
                    self.refs[(rev.repo, name)] = store.get_ref(rev.repo, name)
                    self.watch((store.refs_dir / rev.repo / name).parent)

    def add_file(self, path: Path) -> None:
        self.watch(path.parent)
        self.created.append(path)

    def undo(self) -> None:
        """Put the store's files back as they were."""
        store = self.ctx.store
        for (repo, commit), before in self.revisions.items():
            if not before.existed:
                store.remove_snapshot(repo, commit)
                continue
            sig_dir = signature_dir(self.ctx, repo, commit)
            for path in sig_dir.glob("*") if sig_dir.is_dir() else []:
                if path.name not in before.signatures:
                    path.unlink(missing_ok=True)
            for name, data in before.signatures.items():
                path = sig_dir / name
                if not path.is_file() or path.read_bytes() != data:
                    write_atomic(path, data)
        for link in self.links:
            link.unlink(missing_ok=True)
        for (repo, name), stored in self.refs.items():
            if stored is None:
                (store.refs_dir / repo / name).unlink(missing_ok=True)
            else:
                store.set_ref(repo, name, stored)
        for path in self.created:
            path.unlink(missing_ok=True)
        for directory in sorted(self.fresh_dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError:
                pass  # gone already, or not empty: then it is not only ours
