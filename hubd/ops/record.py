"""Record a revision whose blobs are stored: admit, link, sign and record in one transaction.

The lower stage mirror, publish, import and repair share, so none of them imports another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from .. import __version__
from ..catalog.db import catalog_errors
from ..catalog.revisions import Authored, FileRecord, RevisionRecord, record_revision
from ..context import Context
from ..journal import Journal, recover
from ..model.card import card_record
from ..model.lineage import adapter_lineage
from ..refs import RepoRef, is_commit
from ..sources.base import Attestations, RemoteFile, RemoteRevision
from ..store import Store
from ..trust.admission import admit
from ..trust.keys import node_key, signature_dir, write_atomic
from ..trust.provenance import Hop, extend_chain
from ..trust.shipped import SIGNATURE_FILE
from .sign import sign_files

# The README kept as the model card; a longer one is cut (its front matter comes first).
CARD_TEXT_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Recorded:
    snapshot: Path
    is_adapter: bool
    base_model: str | None
    upstream_signature: dict[str, str] | None  # the verdict on a model.sig the repo ships


def record_snapshot(
    ctx: Context,
    ref: RepoRef,
    remote: RemoteRevision,
    files: Sequence[RemoteFile],
    digests: dict[str, str],
    *,
    source_url: str | None = None,
    served_by: dict[str, str] | None = None,
    carried: Attestations | None = None,
    started: datetime | None = None,
    session: Session | None = None,
    authored: Authored | None = None,
    guard: Callable[[Session], None] | None = None,
) -> Recorded:
    """Admit, link and record a revision, then sign it and its provenance (blocking).

    Shared by mirror, `hubd add` and `hubd import`: ``digests`` maps every path to its verified
    blob. Inside one catalog transaction: the signatures the source carried (and a ``model.sig``
    the repo ships) are checked against the trust store and policy, the snapshot and refs are
    linked, the node key signs the whole revision (OMS) and appends its SLSA statement to the
    provenance chain. A refusal rolls the transaction back, and the journal (hubd.journal)
    removes the files written inside it, also after kill -9. The transaction is ``session``'s when
    given: an import records all its revisions in one, under its own journal.

    A commit pushed to this node comes ``authored`` (parent, message, the token's name: its
    custody hop reads "uploaded by <name>" and its statement names the uploader), with a
    ``guard`` run first inside the transaction (the branch head it was based on still is).
    """
    store = ctx.store
    readme = digests.get("README.md")
    text = card_text(store, readme) if readme else None
    card = card_record(text, remote.card_data, remote.gated)
    local = {  # what lineage reads: the adapter config and GGUF headers
        path: store.local_blob(digest)
        for path, digest in digests.items()
        if path == "adapter_config.json" or path.endswith(".gguf")
    }
    is_adapter, base = adapter_lineage(local, card)
    refs = [] if ref.revision and is_commit(ref.revision) else [ref.revision or "main"]
    source_url = source_url or f"{remote.endpoint}/{remote.repo_id}"
    custody = f"uploaded by {authored.author}" if authored else source_url
    record = RevisionRecord(
        repo_id=remote.repo_id,
        commit=remote.commit,
        source_endpoint=remote.endpoint,
        refs=refs,
        files=[
            FileRecord(
                f.path,
                f.size,
                digests[f.path],
                f.git_oid,
                f.lfs,
                (served_by or {}).get(f.path, remote.endpoint),
            )
            for f in files
        ],
        card=card,
        is_adapter=is_adapter,
        base_model=base,
        node=ctx.settings.node_name,
        client=f"hubd/{__version__}",
        fetched_at=authored.when if authored else datetime.now(UTC),
        upstream=carried.hops if carried else (),
        source_url=custody,
        ref_kind=remote.ref_kind,
        authored=authored,
    )
    shipped = digests.get(SIGNATURE_FILE)
    key = node_key(ctx)
    if session is None:
        recover(store, ctx.catalog)  # a recording killed earlier may have left files behind
    # An import's own journal covers all its revisions; otherwise this recording keeps one.
    journal = Journal(store, ctx.catalog) if session is None else None
    with journal or nullcontext():
        if journal is not None:
            journal.remember(remote.repo_id, remote.commit, refs)
        with catalog_errors(), nullcontext(session) if session else ctx.catalog.begin() as db:
            if guard is not None:
                guard(db)
            revision = record_revision(db, record)
            everything = {f.path: f.sha256 for f in revision.files}
            model_sig = _read(store, shipped) if shipped else None
            admitted = admit(ctx, remote.repo_id, remote.commit, everything, carried, model_sig)
            snapshot = store.link_snapshot(remote.repo_id, remote.commit, digests.items())
            for name in refs:
                store.set_ref(remote.repo_id, name, remote.commit)
            for file_name, data in admitted.signatures.items():
                write_atomic(signature_dir(ctx, remote.repo_id, remote.commit) / file_name, data)
            sign_files(ctx, remote.repo_id, remote.commit, everything, key)
            hop = Hop(
                repo_id=remote.repo_id,
                commit=remote.commit,
                source_url=source_url,
                revision=ref.revision or "main",
                node=ctx.settings.node_name,
                started=started or record.fetched_at,
                finished=datetime.now(UTC),
                upstream_signature=admitted.upstream_signature,
                uploader=authored.author if authored else None,
            )
            extend_chain(ctx, key, hop, everything, admitted.statements)
    return Recorded(snapshot, is_adapter, base, admitted.upstream_signature)


def card_text(store: Store, digest: str) -> str:
    """The start of the README: enough for the card's metadata, however large the file."""
    with store.open_read(digest) as readme:
        return readme.read(CARD_TEXT_LIMIT).decode("utf-8", "replace")


def _read(store: Store, digest: str) -> bytes:
    with store.open_read(digest) as blob:
        return blob.read()
