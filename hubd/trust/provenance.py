"""SLSA Provenance v1 statements: a signed record of where each revision's bytes came from.

Each node that records a revision (mirror, add, import) writes an in-toto Statement v1 with the
SLSA Provenance v1 predicate and signs it with its node key in a DSSE envelope. Subjects are the
revision's OMS root digest (the same one its ``model.sig`` signs) and every file's sha256;
``resolvedDependencies`` names the source repo and its ``gitCommit``. The chain lives beside the
revision's signatures as ``provenance.intoto.jsonl``, one envelope per line in hop order: a
peer hop keeps the statements the previous nodes wrote and appends its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .. import __version__
from ..context import Context
from ..errors import SignatureInvalid
from .keys import Signer, signature_dir, write_atomic
from .oms import PAYLOAD_TYPE, STATEMENT_TYPE, dsse_envelope, dsse_open, manifest_of

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://hubd.dev/provenance/mirror/v1"
CHAIN_FILE = "provenance.intoto.jsonl"


def builder_id(node: str) -> str:
    return f"urn:hubd:node:{node}"


def root_digest(files: Mapping[str, str]) -> str:
    """The OMS subject digest: sha256 over the sorted files' digests (what model.sig signs)."""
    manifest = manifest_of(files.items())
    return hashlib.sha256(
        b"".join(bytes.fromhex(manifest[p]) for p in sorted(manifest))
    ).hexdigest()


@dataclass(frozen=True)
class Hop:
    """What one node did to obtain a revision: the facts a statement attests."""

    repo_id: str
    commit: str
    source_url: str  # the repo URL on the source (the Hub, a peer, file://, bundle:)
    revision: str  # what was asked for: a branch, tag or commit
    node: str
    started: datetime
    finished: datetime
    upstream_signature: dict[str, str] | None = None  # a model.sig the source shipped


def statement(hop: Hop, files: Mapping[str, str]) -> dict[str, Any]:
    """The in-toto Statement v1 with the SLSA Provenance v1 predicate for ``hop``."""
    internal: dict[str, Any] = {"node": hop.node}
    if hop.upstream_signature:
        internal["upstreamSignature"] = hop.upstream_signature
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": hop.repo_id, "digest": {"sha256": root_digest(files)}},
            *({"name": p, "digest": {"sha256": files[p]}} for p in sorted(files)),
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repository": hop.repo_id,
                    "revision": hop.revision,
                    "source": hop.source_url,
                },
                "internalParameters": internal,
                "resolvedDependencies": [
                    {"uri": f"git+{hop.source_url}", "digest": {"gitCommit": hop.commit}}
                ],
            },
            "runDetails": {
                "builder": {"id": builder_id(hop.node), "version": {"hubd": __version__}},
                "metadata": {
                    "invocationId": f"{hop.node}/{hop.repo_id}@{hop.commit}/"
                    f"{hop.finished.timestamp():.0f}",
                    "startedOn": hop.started.isoformat(),
                    "finishedOn": hop.finished.isoformat(),
                },
            },
        },
    }


def envelope(key: ec.EllipticCurvePrivateKey, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A DSSE envelope of ``doc`` signed by ``key`` (keyid: the key's OMS hint)."""
    return dsse_envelope(key, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Attested:
    """One statement of a chain, parsed; ``signer`` is the trusted name whose key verified it."""

    statement: dict[str, Any]
    keyid: str
    signer: str | None

    @property
    def builder(self) -> str:
        return str(self.statement["predicate"]["runDetails"]["builder"]["id"])

    @property
    def subjects(self) -> dict[str, str]:
        return {s["name"]: s["digest"]["sha256"] for s in self.statement["subject"]}

    def to_json(self) -> dict[str, Any]:
        predicate = self.statement["predicate"]
        (dependency,) = predicate["buildDefinition"]["resolvedDependencies"]
        return {
            "builder": self.builder,
            "source": dependency["uri"].removeprefix("git+"),
            "commit": dependency["digest"]["gitCommit"],
            "finished": predicate["runDetails"]["metadata"]["finishedOn"],
            "keyid": self.keyid,
            "signer": self.signer,
            "upstream_signature": predicate["buildDefinition"]["internalParameters"].get(
                "upstreamSignature"
            ),
        }


def check_envelope(
    env: Any, signers: Sequence[Signer], commit: str, files: Mapping[str, str], label: str
) -> Attested:
    """Parse a DSSE envelope of a SLSA statement about ``commit``; verify it if its key is trusted.

    A statement by a key outside the trust store is kept as a claim (``signer`` None). It is an
    error when a trusted key does not verify it, when it is about another commit, or when it
    names one of ``files`` with another digest (a hop may hold fewer or more files, never others).
    """
    try:
        payload = base64.b64decode(env["payload"], validate=True)
        (sig,) = env["signatures"]
        keyid = str(sig["keyid"])
        doc = json.loads(payload)
        ok_type = env["payloadType"] == PAYLOAD_TYPE and doc["_type"] == STATEMENT_TYPE
        if not ok_type or doc["predicateType"] != PREDICATE_TYPE:
            raise SignatureInvalid(f"{label}: not an in-toto SLSA Provenance v1 statement")
        attested = Attested(doc, keyid, None)
        subjects, about = attested.subjects, attested.to_json()["commit"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise SignatureInvalid(f"{label}: malformed provenance statement") from None
    if about != commit:
        raise SignatureInvalid(f"{label}: the statement is about commit {about}, not {commit}")
    changed = sorted(p for p in set(files) & set(subjects) if files[p] != subjects[p])
    if changed:
        raise SignatureInvalid(f"{label}: attests other content for {', '.join(changed)}")
    signer = next((s for s in signers if s.hint == keyid), None)
    if signer is None:
        return attested
    dsse_open(env, signer.key, PAYLOAD_TYPE, f"{label}: the statement")
    return Attested(doc, keyid, signer.name)


def chain_path(ctx: Context, repo_id: str, commit: str) -> Path:
    return signature_dir(ctx, repo_id, commit) / CHAIN_FILE


def read_chain(path: Path) -> list[dict[str, Any]]:
    """The envelopes of a chain file ([] when there is none)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except ValueError:
        raise SignatureInvalid(f"{path}: malformed provenance chain") from None


def extend_chain(
    ctx: Context,
    key: ec.EllipticCurvePrivateKey,
    hop: Hop,
    files: Mapping[str, str],
    inherited: Sequence[dict[str, Any]] = (),
) -> Path:
    """Sign ``hop`` and write the chain: earlier nodes' statements, then this node's latest.

    ``inherited`` (a peer's chain) seeds a revision this node has no chain for yet; a node that
    records the same revision again (more files) replaces its own statement, never duplicates it.
    """
    path = chain_path(ctx, hop.repo_id, hop.commit)
    previous = read_chain(path) or list(inherited)
    own = builder_id(hop.node)
    kept = [e for e in previous if _builder_of(e) != own]
    return write_chain(ctx, hop.repo_id, hop.commit, [*kept, envelope(key, statement(hop, files))])


def write_chain(
    ctx: Context, repo_id: str, commit: str, envelopes: Sequence[Mapping[str, Any]]
) -> Path:
    """Write a revision's chain file: one envelope per line, in hop order."""
    path = chain_path(ctx, repo_id, commit)
    write_atomic(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in envelopes).encode())
    return path


def _builder_of(env: Mapping[str, Any]) -> str | None:
    try:
        doc = json.loads(base64.b64decode(env["payload"]))
        return str(doc["predicate"]["runDetails"]["builder"]["id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def verify_chain(
    chain: Sequence[Any],
    signers: Sequence[Signer],
    commit: str,
    files: Mapping[str, str],
    label: str,
) -> list[Attested]:
    """Every statement of a chain, parsed and verified where the key is trusted."""
    return [
        check_envelope(env, signers, commit, files, f"{label} #{index}")
        for index, env in enumerate(chain)
    ]
