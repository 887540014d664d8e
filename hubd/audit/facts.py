"""What an audit reads from the catalog: each verified revision with its card, files and refs,
and, when a policy asks, whether its stored signatures hold.

Plain column selects instead of ORM objects: an audit reads the whole catalog (lineage needs every
base), and loading 10,000 revisions must stay a small part of the 5 s budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.models import File, ModelCard, Ref, Repo, Revision, RevisionState
from ..catalog.revisions import CardRecord
from ..context import Context
from ..errors import IntegrityError
from ..trust.keys import Signer, signature_dir, stored_signatures, trusted_signers
from ..trust.policy import check_bundle
from ..trust.verdicts import Verdicts, files_digest


@dataclass(frozen=True)
class FileRow:
    path: str
    size: int
    sha256: str


@dataclass
class RevisionRow:
    repo_id: str
    commit: str
    mirrored_at: datetime
    source: str
    is_adapter: bool
    base_model: str | None
    card: CardRecord | None
    files: list[FileRow] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    @property
    def org(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def bases(self) -> list[str]:
        """Every base the card names (merges have several), else the one lineage recorded."""
        named = self.card.base_model if self.card else []
        found = named or ([self.base_model] if self.base_model else [])
        return [b for b in dict.fromkeys(found) if b and b != self.repo_id]


_CARD_COLUMNS = [getattr(ModelCard, name) for name in CardRecord.__dataclass_fields__]


def load_catalog(session: Session, repo_id: str | None = None) -> list[RevisionRow]:
    """Every verified revision (of one repo if asked), ordered by repo and time mirrored."""
    rows: dict[int, RevisionRow] = {}
    stmt = (
        select(
            Revision.id,
            Repo.repo_id,
            Revision.commit,
            Revision.mirrored_at,
            Revision.source_endpoint,
            Revision.is_adapter,
            Revision.base_model,
            ModelCard.revision_pk,
            *_CARD_COLUMNS,
        )
        .join(Repo, Revision.repo_pk == Repo.id)
        .outerjoin(ModelCard, ModelCard.revision_pk == Revision.id)
        .where(Revision.state == RevisionState.VERIFIED)
        .order_by(Repo.repo_id, Revision.mirrored_at)
    )
    files = select(File.revision_pk, File.path, File.size, File.sha256).order_by(File.path)
    refs = select(Repo.repo_id, Ref.name, Ref.commit).join(Repo, Ref.repo_pk == Repo.id)
    if repo_id is not None:
        stmt = stmt.where(Repo.repo_id == repo_id)
        files = (
            files.join(Revision, File.revision_pk == Revision.id)
            .join(Repo)
            .where(Repo.repo_id == repo_id)
        )
        refs = refs.where(Repo.repo_id == repo_id)
    for pk, repo_id, commit, at, source, is_adapter, base, card_pk, *card in session.execute(stmt):
        rows[pk] = RevisionRow(
            repo_id=repo_id,
            commit=commit,
            mirrored_at=at,
            source=source,
            is_adapter=is_adapter,
            base_model=base,
            card=None if card_pk is None else CardRecord(*card),
        )
    for pk, path, size, sha256 in session.execute(files):
        if (row := rows.get(pk)) is not None:
            row.files.append(FileRow(path, size, sha256))
    by_commit = {(r.repo_id, r.commit): r for r in rows.values()}
    for repo, name, commit in session.execute(refs):
        if (row := by_commit.get((repo, commit))) is not None:
            row.refs.append(name)
    return list(rows.values())


def heads(rows: list[RevisionRow]) -> dict[str, RevisionRow]:
    """The revision that stands for each repo as a base: its main ref, else the latest mirrored."""
    result: dict[str, RevisionRow] = {}
    for row in rows:  # ordered by time, so later ones replace earlier ones
        current = result.get(row.repo_id)
        if current is None or "main" not in current.refs:
            result[row.repo_id] = row
    return result


def head_finder(
    catalog: sessionmaker[Session], rows: list[RevisionRow], *, complete: bool
) -> Callable[[str], RevisionRow | None]:
    """Finds the head of a base repo among ``rows``, asking the catalog for repos not loaded
    unless ``rows`` already is the ``complete`` catalog."""
    found = heads(rows)
    asked = {row.repo_id for row in rows}

    def find(repo_id: str) -> RevisionRow | None:
        if not complete and repo_id not in asked:
            asked.add(repo_id)
            with catalog() as session:
                found.update(heads(load_catalog(session, repo_id)))
        return found.get(repo_id)

    return find


class SignatureCheck:
    """Tells whether a revision is signed: a stored signature verifies with a trusted key over
    the digests the catalog records (a bundle that is broken, untrusted or stale does not count).

    About 0.15 ms per revision, mostly one ECDSA verify, so audits ask only when the answer
    decides (hubd.audit.policy.decide), and a signature this node verified before is taken
    from its verdicts (hubd.trust.verdicts) by the bundle's digest: :meth:`save` records the
    new ones. Bundles are named by their key's hint: the trusted signers' own are tried first,
    by name, before listing the others (certificate bundles).
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._verdicts = Verdicts(ctx.catalog, ctx.settings.node_name)

    @cached_property
    def _signers(self) -> tuple[list[Signer], tuple[str, ...], tuple[str, ...]]:
        trusted = trusted_signers(self._ctx)
        keys = tuple(s.hint for s in trusted if s.ca is None)
        return trusted, tuple(f"{s.hint}.sig" for s in trusted), keys

    def _bundles(self, row: RevisionRow, names: tuple[str, ...]) -> Iterator[Path]:
        directory = signature_dir(self._ctx, row.repo_id, row.commit)
        yield from (directory / name for name in names)
        listed = stored_signatures(self._ctx, row.repo_id, row.commit)  # if none of those held
        yield from (path for path in listed if path.name not in names)

    def __call__(self, row: RevisionRow) -> bool:
        trusted, names, keys = self._signers
        files = {f.path: f.sha256 for f in row.files}
        listing = files_digest(files)
        for path in self._bundles(row, names):
            label = f"{row.repo_id}@{row.commit[:12]}: signature {path.stem[:12]}"
            try:
                data = path.read_bytes()
                bundle = hashlib.sha256(data).hexdigest()
                if self._verdicts.valid(bundle, keys, listing):
                    return True
                signer = check_bundle(data, files, trusted, label, False)
            except (IntegrityError, OSError):  # missing, unreadable, broken or stale
                continue
            if signer is not None:
                if signer.ca is None:
                    self._verdicts.add(bundle, signer.hint, listing)
                return True
        return False

    def save(self) -> int:
        """Record the signatures verified since this check was made; how many."""
        return self._verdicts.save()
