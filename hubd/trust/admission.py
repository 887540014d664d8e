"""Admission: the signatures a source carried with a revision, checked before it becomes visible.

A hubd peer serves each revision's OMS signatures and provenance chain; a bundle carries them; a
Hugging Face repo may ship its own ``model.sig``. Before the snapshot is linked and the catalog
row committed, every one of them is checked against the revision's verified digests and the
trust store, and the trust policy's required signers must be among those whose signature holds
(the node's own key excepted: it signs what it admits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..context import Context
from ..errors import UntrustedSigner
from ..sources.base import Attestations
from .keys import NODE, trusted_signers
from .oms import Bundle
from .policy import check_bundle, load_rules, required_signers
from .provenance import StatementEnvelope, verify_chain
from .shipped import SIGNATURE_FILE


@dataclass
class Admitted:
    """What passed: signature files to keep (name -> bundle), the carried provenance chain
    (validated, in hop order), and the upstream model.sig's fate."""

    signatures: dict[str, bytes] = field(default_factory=dict)
    statements: list[StatementEnvelope] = field(default_factory=list)
    upstream_signature: dict[str, str] | None = None


def _file_name(data: bytes, label: str) -> str:
    hint = Bundle.parse(data, label).hint
    return f"{hint}.sig" if hint else "upstream.sig"


def admit(
    ctx: Context,
    repo_id: str,
    commit: str,
    files: Mapping[str, str],
    carried: Attestations | None,
    model_sig: bytes | None,
) -> Admitted:
    """Check what came with ``repo_id@commit`` (whose full file map is ``files``), or raise.

    ``carried`` is what a peer or bundle served (None from a plain Hub); ``model_sig`` the
    bytes of a ``model.sig`` the repo itself ships. A broken signature or statement by a trusted
    key is SignatureInvalid; a peer or bundle without a required signer is UntrustedSigner.
    Signatures by keys outside the trust store are kept: trusting the key later makes them count.
    """
    signers = trusted_signers(ctx)
    label = f"{repo_id}@{commit[:12]}"
    admitted = Admitted()
    valid: set[str] = set()
    if model_sig is not None:
        signer = check_bundle(
            model_sig, files, signers, f"{label}: upstream {SIGNATURE_FILE}", complete=False
        )
        name = _file_name(model_sig, label)
        admitted.signatures[name] = model_sig
        admitted.upstream_signature = {
            "status": "verified" if signer else "untrusted",
            "signer": signer.name if signer else "",
            "key": name.removesuffix(".sig"),
        }
        if signer:
            valid.add(signer.name)
    if carried is None:
        return admitted
    for name, data in sorted(carried.signatures.items()):
        signer = check_bundle(
            data, files, signers, f"{label}: carried signature {name[:16]}", complete=False
        )
        admitted.signatures[_file_name(data, label)] = data
        if signer:
            valid.add(signer.name)
    chain = verify_chain(carried.statements, signers, commit, files, f"{label}: provenance")
    admitted.statements = [attested.envelope for attested in chain]
    missing = [n for n in required_signers(load_rules(ctx), repo_id) if n not in valid | {NODE}]
    if missing:
        raise UntrustedSigner(
            f"{label}: the trust policy needs a valid signature by {', '.join(missing)}, "
            f"and {carried.origin} carried none",
            hint="sign it on the source node (`hubd sign --bundle`) or trust its signer "
            "(`hubd trust add`)",
        )
    return admitted
