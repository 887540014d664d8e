"""Signatures this node already verified, so audits do not verify every bundle again.

A verdict is kept for a bundle checked with a plain trusted key (catalog.models.SignatureVerdict:
the bundle's sha256, the key's OMS hint and the sha256 of the revision's path/digest list). One
counts only for keys trusted now, so a key taken out of the trust store takes its verdicts with
it. Certificate bundles are not kept: their chain's validity depends on the time of the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.db import insert_new
from ..catalog.models import SignatureVerdict

Key = tuple[str, str, str]  # (bundle sha256, key hint, files sha256)


def files_digest(files: Mapping[str, str]) -> str:
    """sha256 over a revision's sorted ``path\\0sha256\\n`` lines."""
    listing = hashlib.sha256()
    for path in sorted(files):
        listing.update(f"{path}\0{files[path]}\n".encode())
    return listing.hexdigest()


class Verdicts:
    """This node's verdicts, read once from the catalog; new ones written by :meth:`save`."""

    def __init__(self, catalog: sessionmaker[Session], node: str) -> None:
        self._catalog = catalog
        self._node = node
        self._known: set[Key] | None = None
        self._new: set[Key] = set()

    def valid(self, bundle: str, hints: Iterable[str], files: str) -> bool:
        """Whether one of the keys ``hints`` was found to sign ``bundle`` over ``files``."""
        if self._known is None:
            with self._catalog() as session:
                rows = session.execute(
                    select(
                        SignatureVerdict.bundle_sha256,
                        SignatureVerdict.key_hint,
                        SignatureVerdict.files_sha256,
                    ).where(SignatureVerdict.node == self._node)
                )
                self._known = {(b, k, f) for b, k, f in rows}
        return any((bundle, hint, files) in self._known for hint in hints)

    def add(self, bundle: str, hint: str, files: str) -> None:
        key = (bundle, hint, files)
        if self._known is None or key not in self._known:
            self._new.add(key)

    def save(self) -> int:
        """Write the verdicts added since reading (another process may have written some of
        them meanwhile: those are kept as they are); how many were new."""
        if not self._new:
            return 0
        now = datetime.now(UTC)
        rows = [
            {"node": self._node, "bundle_sha256": b, "key_hint": k, "files_sha256": f,
             "checked_at": now}
            for b, k, f in sorted(self._new)
        ]  # fmt: skip
        with self._catalog.begin() as session:
            insert_new(session, SignatureVerdict, rows)
        saved = len(self._new)
        self._known = (self._known or set()) | self._new
        self._new = set()
        return saved
