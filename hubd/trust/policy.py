"""Trust policy: which signers a revision needs before it may be used, and why not.

``$HUBD_HOME/trust/policy.toml``, a :class:`TrustPolicyFile` (``schemas/trust-policy.schema.json``
is written from it)::

    [[rules]]
    repo = "acme/*"                 # glob or list of globs over org/name
    signers = ["security-team"]     # every one of these must have signed (names from `hubd trust`)

Every matching rule applies; a repo no rule matches needs no signature. A signer is a trusted
key, or an organisation CA: a certificate bundle whose chain leads to it signs as its name.
Hashes are the caller's business (``hubd verify`` re-hashes the blobs first): here a signature
is checked against the digests the catalog records.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Annotated, Any

from cryptography import x509
from pydantic import ConfigDict, Field, StrictStr, ValidationError

from ..catalog.models import RevisionState
from ..catalog.revisions import require_revision, revisions_with_files
from ..context import Context
from ..errors import InvalidPolicy, SignatureInvalid
from ..validation import Closed, Globs, problem
from . import provenance
from .certificates import verify_chain
from .keys import Signer, stored_signatures, trust_dir, trusted_signers
from .oms import Bundle, compare

SignerName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class TrustRule(Closed):
    """One rule: the repos it covers and the signers each of their revisions needs."""

    repos: Globs = Field(
        alias="repo", description="A glob over org/name, or a list of them (any may match)."
    )
    signers: list[SignerName] = Field(
        min_length=1,
        description="Names from `hubd trust ls` ('node' is this node's key); all must have signed.",
    )


class TrustPolicyFile(Closed):
    """Which trusted signers must have signed a revision of which repos before it may be used.
    Every matching rule applies; a repo no rule matches needs no signature."""

    model_config = ConfigDict(title="hubd trust policy ($HUBD_HOME/trust/policy.toml)")

    rules: list[TrustRule] = Field(default_factory=list)


@dataclass
class Verdict:
    """May this revision be used: ``ok``, else ``reasons``; ``signers`` whose signature holds."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    signers: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": self.reasons, "signers": self.signers}


def load_rules(ctx: Context) -> list[TrustRule]:
    path = trust_dir(ctx) / "policy.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidPolicy(f"{path}: {exc}") from None
    try:
        return TrustPolicyFile.model_validate(data).rules
    except ValidationError as exc:
        raise InvalidPolicy(
            f"{path}: {problem(exc)}",
            hint="each [[rules]] table holds repo (a glob or a list) and signers (a non-empty "
            "list of trusted names), nothing else",
        ) from None


def required_signers(rules: list[TrustRule], repo_id: str) -> list[str]:
    needed = {s for r in rules if any(fnmatchcase(repo_id, g) for g in r.repos) for s in r.signers}
    return sorted(needed)


def _certified(
    chain: Sequence[x509.Certificate], signers: list[Signer], label: str
) -> Signer | None:
    """The CA's name with the leaf's key, if ``chain`` leads to a trusted CA now."""
    cas = {s.ca: s for s in signers if s.ca is not None}
    anchor = verify_chain(chain, list(cas), datetime.now(UTC), label)
    if anchor is None:
        return None
    ca = cas[anchor]
    return Signer(ca.name, chain[0].public_key(), ca.path, ca.ca)


def check_bundle(
    data: bytes,
    files: Mapping[str, str],
    signers: list[Signer],
    label: str,
    complete: bool = True,
) -> Signer | None:
    """The trusted signer of a bundle that covers exactly ``files``; None if no trusted key.

    A certificate bundle's signer is the trusted CA its chain leads to (None if it leads to
    none), with the leaf certificate's key. Raises SignatureInvalid for a bad signature, a
    chain that fails (expired, wrong usage, broken link), or content that differs from what
    was signed. ``complete=False``: a revision may hold fewer files than were signed (see
    :func:`~hubd.trust.oms.compare`).
    """
    bundle = Bundle.parse(data, label)
    if bundle.chain:
        certified = _certified(bundle.chain, signers, label)
        candidates = [certified] if certified else []
    else:
        candidates = [s for s in signers if s.ca is None and bundle.hint in (None, s.hint)]
    for signer in candidates:
        try:
            signed = bundle.verify(signer.key, f"{label} ({signer.name})")
        except SignatureInvalid:
            if bundle.hint is None:
                continue  # an old bundle without a hint: try every trusted key
            raise
        compare(signed, files, f"{label} ({signer.name})", complete)
        return signer
    return None


def _verdict(
    ctx: Context, repo_id: str, commit: str, files: Mapping[str, str], rules: list[TrustRule]
) -> Verdict:
    signers = trusted_signers(ctx)
    verdict = Verdict(ok=True)
    untrusted = 0
    for path in stored_signatures(ctx, repo_id, commit):
        label = f"{repo_id}@{commit[:12]}: signature {path.stem[:12]}"
        try:  # a signature of the whole repo also vouches for a mirror limited by --include
            signer = check_bundle(path.read_bytes(), files, signers, label, complete=False)
        except SignatureInvalid as exc:
            verdict.reasons.append(exc.message)
            continue
        if signer is None:
            untrusted += 1
        else:
            verdict.signers.append(signer.name)
    label = f"{repo_id}@{commit[:12]}: provenance"
    try:
        chain = provenance.read_chain(provenance.chain_path(ctx, repo_id, commit))
        provenance.verify_chain(chain, signers, commit, files, label)
    except SignatureInvalid as exc:
        verdict.reasons.append(exc.message)
    verdict.signers.sort()
    known = {s.name for s in signers}
    for name in required_signers(rules, repo_id):
        if name not in verdict.signers:
            why = "" if name in known else f" (no key named {name!r} in the trust store)"
            found = f"; {untrusted} signature(s) by untrusted keys" if untrusted else ""
            verdict.reasons.append(
                f"{repo_id}@{commit[:12]}: needs a valid signature by {name}{why}{found}"
            )
    verdict.ok = not verdict.reasons
    return verdict


def may_use(ctx: Context, repo_id: str, commit: str) -> Verdict:
    """Whether the trust policy lets this revision be used, and every reason why not.

    No rule for the repo means allowed; a signature or provenance statement that is present but
    broken or does not match the catalog's digests is always a reason (something was tampered
    with).
    """
    with ctx.catalog() as session:
        revision = require_revision(session, repo_id, commit)
        state, full = revision.state, revision.commit
        files = {f.path: f.sha256 for f in revision.files}
    verdict = _verdict(ctx, repo_id, full, files, load_rules(ctx))
    if state != RevisionState.VERIFIED:
        verdict.reasons.insert(0, f"{repo_id}@{commit[:12]} is {state}, not verified")
        verdict.ok = False
    return verdict


def verify_signatures(ctx: Context, repo_id: str | None = None) -> list[tuple[str, str, Verdict]]:
    """(repo, commit, verdict) for every revision (of ``repo_id``, or all)."""
    with ctx.catalog() as session:
        revisions = [
            (r.repo.repo_id, r.commit, r.state, {f.path: f.sha256 for f in r.files})
            for r in revisions_with_files(session, repo_id)
        ]
    rules = load_rules(ctx)
    results = []
    for repo, commit, state, files in revisions:
        verdict = _verdict(ctx, repo, commit, files, rules)
        if state != RevisionState.VERIFIED:
            verdict.reasons.insert(0, f"{repo}@{commit[:12]} is {state}, not verified")
            verdict.ok = False
        results.append((repo, commit, verdict))
    return results
