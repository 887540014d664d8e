"""`hubd sign` and `hubd export`: OMS signatures over catalog revisions, and air-gap copies.

A signature covers the digests the catalog recorded when every byte was verified on the way
in, so signing reads no blob; `hubd verify --signatures` re-hashes the blobs before checking.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ..catalog.models import RevisionState
from ..catalog.revisions import require_revision
from ..context import Context
from ..errors import (
    HashMismatch,
    InvalidRequest,
    RevisionNotFound,
    StoreError,
    UntrustedSigner,
)
from ..hashes import CHUNK
from ..refs import RepoRef, safe_relpath
from ..trust import oms as signing
from ..trust.certificates import check_signing_chain, subject
from ..trust.keys import Signer, node_key, signature_dir, trusted_signers, write_atomic
from ..trust.policy import check_bundle
from ..trust.shipped import SIGNATURE_FILE


@dataclass(frozen=True)
class SignResult:
    repo: str
    commit: str
    signer: str  # a trusted name, else the key hint
    key_hint: str
    path: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _revision_files(ctx: Context, ref: RepoRef) -> tuple[str, dict[str, str]]:
    """(commit, path -> sha256) of a verified revision."""
    with ctx.catalog() as session:
        revision = require_revision(session, ref.repo_id, ref.revision)
        if revision.state != RevisionState.VERIFIED:
            raise RevisionNotFound(
                f"{ref} is not a verified revision in the catalog", hint="see `hubd show`"
            )
        return revision.commit, {f.path: f.sha256 for f in revision.files}


def _signer_name(ctx: Context, hint: str) -> str:
    return next((s.name for s in trusted_signers(ctx) if s.hint == hint), hint)


def sign_revision(
    ctx: Context,
    ref: RepoRef,
    key: ec.EllipticCurvePrivateKey | None = None,
    chain: Sequence[x509.Certificate] = (),
) -> SignResult:
    """Sign a revision's manifest with ``key`` (default: the node key) and keep the bundle."""
    commit, files = _revision_files(ctx, ref)
    return sign_files(ctx, ref.repo_id, commit, files, key or node_key(ctx), chain)


def sign_files(
    ctx: Context,
    repo_id: str,
    commit: str,
    files: dict[str, str],
    key: ec.EllipticCurvePrivateKey,
    chain: Sequence[x509.Certificate] = (),
) -> SignResult:
    """Sign ``files`` (path -> sha256, the revision's verified digests) and keep the bundle.

    With ``chain`` (``key``'s certificate, then its issuers) the bundle carries the chain; it
    is refused unless the certificates are valid now, may sign, and lead to a trusted CA (the
    signer), so a forgotten ``--chain`` never replaces a good signature with a useless one.
    """
    label = f"{repo_id}@{commit[:12]}"
    if chain:
        check_signing_chain(chain, datetime.now(UTC), label)
    manifest = signing.manifest_of(files.items())
    bundle = signing.sign(key, repo_id.split("/", 1)[1], manifest, chain)
    hint = signing.key_hint(key.public_key())
    name = _signer_name(ctx, hint)
    if chain:
        certified = check_bundle(bundle, files, trusted_signers(ctx), label)
        if certified is None:
            raise _untrusted_chain(label, chain)
        name = certified.name
    path = signature_dir(ctx, repo_id, commit) / f"{hint}.sig"
    write_atomic(path, bundle)
    return SignResult(repo_id, commit, name, hint, str(path))


def _untrusted_chain(what: str, chain: Sequence[x509.Certificate]) -> UntrustedSigner:
    return UntrustedSigner(
        f"{what}: signed with certificate {subject(chain[0])}, whose chain (up to "
        f"{chain[-1].issuer.rfc4514_string()}) leads to no CA in the trust store",
        hint="trust the organisation CA with `hubd trust add NAME CA.pem`; pass the "
        "certificates between it and the signing certificate with --chain",
    )


def trusted_bundle(ctx: Context, bundle_file: Path, files: dict[str, str], label: str) -> Signer:
    """The trusted signer of the bundle in ``bundle_file``, which must cover exactly ``files``."""
    try:
        data = bundle_file.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {bundle_file}: {exc.strerror or exc}") from None
    signer = check_bundle(data, files, trusted_signers(ctx), label)
    chain = signing.Bundle.parse(data, label).chain
    if signer is None and chain:
        raise _untrusted_chain(str(bundle_file), chain)
    if signer is None:
        raise UntrustedSigner(
            f"{bundle_file}: signed by a key that is not in the trust store",
            hint="add the signer's public key with `hubd trust add NAME KEY.pem`",
        )
    return signer


def keep_signature(ctx: Context, repo_id: str, commit: str, hint: str, data: bytes) -> Path:
    path = signature_dir(ctx, repo_id, commit) / f"{hint}.sig"
    write_atomic(path, data)
    return path


def import_signature(ctx: Context, ref: RepoRef, bundle_file: Path) -> SignResult:
    """Keep a bundle made elsewhere (e.g. `model_signing sign key`) once it checks out."""
    commit, files = _revision_files(ctx, ref)
    signer = trusted_bundle(ctx, bundle_file, files, f"{ref.repo_id}@{commit[:12]}")
    path = keep_signature(ctx, ref.repo_id, commit, signer.hint, bundle_file.read_bytes())
    return SignResult(ref.repo_id, commit, signer.name, signer.hint, str(path))


@dataclass(frozen=True)
class ExportResult:
    repo: str
    commit: str
    files: int
    bytes: int
    directory: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _copy_verified(source: Path, target: Path, sha256: str, label: str) -> int:
    """Copy a blob while hashing it: an export never carries bytes the catalog did not sign."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    if digest.hexdigest() != sha256:
        raise HashMismatch(
            f"{label}: stored blob is damaged (sha256 {digest.hexdigest()}, expected {sha256})",
            hint="re-mirror the revision, then export again",
        )
    return size


def node_signature(ctx: Context, ref: RepoRef, commit: str) -> Path:
    """The node's bundle for a revision, signed now if it has none: every export carries one."""
    hint = signing.key_hint(node_key(ctx).public_key())
    path = signature_dir(ctx, ref.repo_id, commit) / f"{hint}.sig"
    if not path.exists():
        sign_revision(ctx, RepoRef(ref.org, ref.name, commit))
    return path


def export_revision(ctx: Context, ref: RepoRef, to: Path) -> ExportResult:
    """Real files plus ``model.sig`` (the node's bundle) in a new directory ``to``.

    Written to a sibling temp directory and renamed at the end, so ``to`` is either complete
    or absent.
    """
    commit, files = _revision_files(ctx, ref)
    if SIGNATURE_FILE in files:
        raise InvalidRequest(f"{ref.repo_id} has its own {SIGNATURE_FILE}; cannot export")
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise InvalidRequest(f"{to} exists and is not an empty directory")
    bundle = node_signature(ctx, ref, commit).read_bytes()
    check_bundle(bundle, files, trusted_signers(ctx), f"{ref.repo_id}@{commit[:12]}")
    staging = to.with_name(f".{to.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    total = 0
    try:
        for path, sha256 in sorted(files.items()):
            total += _copy_verified(
                ctx.store.local_blob(sha256), staging / safe_relpath(path), sha256, path
            )
        (staging / SIGNATURE_FILE).write_bytes(bundle)
        if to.exists():
            to.rmdir()
        staging.rename(to)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StoreError(f"cannot export to {to}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(ref.repo_id, commit, len(files), total, str(to), str(to / "model.sig"))
