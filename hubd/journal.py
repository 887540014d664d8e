"""What a recording may leave in the store if it fails or dies, and how it is put back.

Recording a revision (mirror, ``hubd add``, import, repair) writes files — snapshot links, refs,
signature files — inside the catalog transaction that makes the revision visible. The catalog
rolls back by itself; the files do not. So before the first write a journal names the
revisions and refs the recording touches, in ``tmp/record-<pid>-<hex>.json``, fsynced and held
under an flock by its writer. The writer removes it once the transaction has committed.

On a failure in the process, :meth:`Journal.undo` puts the store back. After a kill -9 the
journal stays behind, unlocked; the next process that opens the store (:func:`recover`) finds it
and makes the files agree with the catalog, which is the truth: links, refs and signatures of a
revision the catalog lacks are removed, links of a known revision that the catalog does not list
are removed, refs are set to the catalog's commit or removed. Nothing the catalog does not list is
left visible.

What recovery cannot tell apart: a revision that already existed and whose re-recording died
between its catalog commit and the journal's removal. Its signature files are then left as they
are, not restored from the journal's copy: either is a signature by this node, and
``hubd verify --signatures`` reports one that no longer matches.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from .catalog.revisions import find_ref, find_revision
from .errors import StoreError
from .store import Store, temp_path

PREFIX = "record-"


@dataclass
class _Revision:
    repo: str
    commit: str
    existed: bool  # in the catalog before: only what the recording added is undone
    signatures: dict[str, str] | None  # base64 of the signature directory's files, None: none


@dataclass
class Journal:
    """Enough of the store as it was to undo a recording, kept on disk until it commits."""

    store: Store
    catalog: sessionmaker[Session]
    revisions: list[_Revision] = field(default_factory=list)
    refs: list[tuple[str, str]] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)  # blobs an import moved in
    fresh_dirs: set[Path] = field(default_factory=set)
    path: Path | None = None
    _fd: int = -1

    def __enter__(self) -> Journal:
        self.store.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.store.tmp_dir / f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}.json"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Committed (no exception): forget. Failed: put the store back first."""
        try:
            if kind is not None:
                self.undo()
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def remember(self, repo: str, commit: str, refs: Iterable[str]) -> None:
        """Note a revision and the refs a recording may move, before it writes any of them."""
        store = self.store
        with self.catalog() as session:
            existed = find_revision(session, repo, commit) is not None
        sig_dir = store.signature_dir(repo, commit)
        signatures = (
            {
                p.name: base64.b64encode(p.read_bytes()).decode()
                for p in sig_dir.iterdir()
                if p.is_file() and not p.is_symlink()
            }
            if sig_dir.is_dir()
            else None
        )
        self.revisions.append(_Revision(repo, commit, existed, signatures))
        self.watch(store.snapshot_dir(repo, commit))
        self.watch(sig_dir)
        for name in refs:
            self.refs.append((repo, name))
            self.watch(store.ref_path(repo, name).parent)
        self._save()

    def add_file(self, path: Path) -> None:
        """A file the recording creates that only an in-process undo removes (a moved blob)."""
        self.watch(path.parent)
        self.created.append(path)

    def watch(self, directory: Path) -> None:
        """Note ``directory`` and those above it that do not exist yet (removed if empty)."""
        root = self.store.root
        for parent in [directory, *directory.parents]:
            if root not in parent.parents or parent.exists():
                break
            self.fresh_dirs.add(parent)

    def _save(self) -> None:
        data = json.dumps(
            {
                "revisions": [r.__dict__ for r in self.revisions],
                "refs": self.refs,
                "fresh_dirs": sorted(str(d) for d in self.fresh_dirs),
            }
        ).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
        except OSError as exc:
            raise StoreError(f"cannot write the journal {self.path}: {exc.strerror}") from None

    def undo(self) -> None:
        """Put the store's files back as the catalog (rolled back) describes them."""
        _agree(self.store, self.catalog, self.revisions, self.refs, restore_signatures=True)
        for path in self.created:
            path.unlink(missing_ok=True)
        _remove_empty(self.fresh_dirs)


def _agree(
    store: Store,
    catalog: sessionmaker[Session],
    revisions: Iterable[_Revision],
    refs: Iterable[tuple[str, str]],
    *,
    restore_signatures: bool,
) -> None:
    """Make the files of these revisions and refs what the catalog says they are."""
    with catalog() as session:
        for rev in revisions:
            row = find_revision(session, rev.repo, rev.commit)
            if row is None or row.commit != rev.commit:
                store.remove_snapshot(rev.repo, rev.commit)
                continue
            _prune(store.snapshot_dir(rev.repo, rev.commit), {f.path for f in row.files})
            if restore_signatures and rev.existed:
                _restore(store.signature_dir(rev.repo, rev.commit), rev.signatures or {})
        for repo, name in refs:
            ref = find_ref(session, repo, name)
            path = store.ref_path(repo, name)
            if ref is None:
                path.unlink(missing_ok=True)
            elif store.get_ref(repo, name) != ref.commit:
                store.set_ref(repo, name, ref.commit)


def _prune(snapshot: Path, keep: set[str]) -> None:
    """Remove what the snapshot holds beyond ``keep`` (links added, temp links left)."""
    if not snapshot.is_dir():
        return
    for entry in sorted(snapshot.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = entry.relative_to(snapshot).as_posix()
        if entry.is_symlink() or not entry.is_dir():
            if rel not in keep:
                entry.unlink(missing_ok=True)
        elif not any(entry.iterdir()):
            entry.rmdir()


def _restore(directory: Path, files: dict[str, str]) -> None:
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name not in files:
            path.unlink(missing_ok=True)
    for name, encoded in files.items():
        data = base64.b64decode(encoded)
        path = directory / name
        if not path.is_file() or path.read_bytes() != data:
            tmp = temp_path(path)
            tmp.write_bytes(data)
            tmp.replace(path)


def _remove_empty(directories: Iterable[Path]) -> None:
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # gone already, or not empty: not only ours
            directory.rmdir()


def recover(store: Store, catalog: sessionmaker[Session]) -> int:
    """Undo what recordings killed before they committed left behind; returns how many."""
    if not store.tmp_dir.is_dir():
        return 0
    done = 0
    for path in store.tmp_dir.glob(f"{PREFIX}*.json"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its writer is alive
            if os.fstat(fd).st_ino != path.stat().st_ino:
                continue  # another process recovered it and a new journal took the name
            _replay(store, catalog, os.pread(fd, 64 * 1024 * 1024, 0))
            path.unlink()
            done += 1
        except (OSError, ValueError, KeyError, TypeError):
            continue
        finally:
            os.close(fd)
    return done


def _replay(store: Store, catalog: sessionmaker[Session], data: bytes) -> None:
    if not data.strip():
        return  # killed before it noted anything, so before it wrote anything
    body: dict[str, Any] = json.loads(data)
    revisions = [_Revision(**r) for r in body["revisions"]]
    refs = [(str(repo), str(name)) for repo, name in body["refs"]]
    _agree(store, catalog, revisions, refs, restore_signatures=False)
    _remove_empty(Path(d) for d in body["fresh_dirs"] if store.root in Path(d).parents)
