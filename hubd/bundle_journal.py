"""What a failed import must put back: the store and catalog as they were before its commit.

hubd import checks everything before it writes; what can still fail is the writing itself (a
full disk, the catalog going away, a card or file a revision's recording refuses). The journal
notes, before the first write, every path and row the commit may touch, and puts them back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .bundle import IndexRevision
from .catalog.models import Blob, File, Ref, Repo
from .catalog.queries import CardRecord, delete_revision, find_revision
from .context import Context
from .verify.keys import signature_dir, write_atomic

log = logging.getLogger("hubd.bundle")


def ref_row(session: Session, repo_id: str, name: str) -> Ref | None:
    return session.scalar(select(Ref).join(Repo).where(Repo.repo_id == repo_id, Ref.name == name))


@dataclass
class _Before:
    """A revision as it was before the import touched it, to put back on failure."""

    existed: bool
    paths: set[str]
    hops: int
    state: str | None
    is_adapter: bool
    base_model: str | None
    card: dict[str, Any] | None
    signatures: dict[str, bytes]  # the signature directory's files


class Journal:
    """Enough of the store and catalog as they were to undo a failed commit exactly."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.revisions: dict[tuple[str, str], _Before] = {}
        self.refs: dict[tuple[str, str], tuple[tuple[str, datetime] | None, str | None]] = {}
        self.blob_rows: set[str] = set()  # Blob rows the import may add
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
        """Note each revision's rows, files and ``refs`` (the ones it moves) before commit."""
        store = self.ctx.store
        with self.ctx.catalog() as session:
            for rev, refs in changes:
                row = find_revision(session, rev.repo, rev.commit)
                sig_dir = signature_dir(self.ctx, rev.repo, rev.commit)
                card = row.card if row else None
                self.revisions[(rev.repo, rev.commit)] = _Before(
                    existed=row is not None,
                    paths={f.path for f in row.files} if row else set(),
                    hops=len(row.provenance) if row else 0,
                    state=row.state if row else None,
                    is_adapter=row.is_adapter if row else False,
                    base_model=row.base_model if row else None,
                    card={k: getattr(card, k) for k in CardRecord.__dataclass_fields__}
                    if card
                    else None,
                    signatures={p.name: p.read_bytes() for p in sig_dir.glob("*") if p.is_file()}
                    if sig_dir.is_dir()
                    else {},
                )
                snapshot = store.snapshot_dir(rev.repo, rev.commit)
                self.watch(snapshot)
                self.watch(sig_dir)
                known = self.revisions[(rev.repo, rev.commit)].paths
                for f in rev.files:
                    if row is not None and f.path not in known:
                        self.watch((snapshot / f.path).parent)
                        self.links.append(snapshot / f.path)
                for name in refs:
                    ref = ref_row(session, rev.repo, name)
                    before = (ref.commit, ref.updated_at) if ref else None
                    self.refs[(rev.repo, name)] = (before, store.get_ref(rev.repo, name))
                    self.watch((store.refs_dir / rev.repo / name).parent)
            shas = {f.sha256 for rev, _ in changes for f in rev.files}
            self.blob_rows = shas - set(
                session.scalars(select(Blob.sha256).where(Blob.sha256.in_(shas)))
            )

    def add_file(self, path: Path) -> None:
        self.watch(path.parent)
        self.created.append(path)

    def undo(self) -> None:
        """Put the catalog, then the store, back as they were; log what cannot be."""
        try:
            self._undo_catalog()
        except Exception:
            log.exception("import: could not undo the catalog rows")
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
        for (repo, name), (_, stored) in self.refs.items():
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

    def _undo_catalog(self) -> None:
        with self.ctx.catalog.begin() as session:
            for (repo, commit), before in self.revisions.items():
                row = find_revision(session, repo, commit)
                if row is None:
                    continue
                if not before.existed:
                    delete_revision(session, row)
                    continue
                row.files[:] = [f for f in row.files if f.path in before.paths]
                row.provenance[:] = [p for p in row.provenance if p.hop < before.hops]
                row.state = before.state or row.state
                row.is_adapter, row.base_model = before.is_adapter, before.base_model
                if before.card is None:
                    row.card = None
                elif row.card is not None:
                    for key, value in before.card.items():
                        setattr(row.card, key, value)
            session.flush()
            for (repo_id, name), (before_ref, _) in self.refs.items():
                ref = ref_row(session, repo_id, name)
                if before_ref is None:
                    if ref is not None:
                        session.delete(ref)
                elif ref is None:
                    repo = session.scalar(select(Repo).where(Repo.repo_id == repo_id))
                    assert repo is not None  # it had this ref, so it had a revision
                    commit, updated_at = before_ref
                    session.add(Ref(repo=repo, name=name, commit=commit, updated_at=updated_at))
                else:
                    ref.commit, ref.updated_at = before_ref
            session.execute(
                delete(Blob).where(
                    Blob.sha256.in_(self.blob_rows), Blob.sha256.not_in(select(File.sha256))
                )
            )
