"""SLSA Provenance v1 statements: a signed record of where each revision's bytes came from.

Each node that records a revision (mirror, add, import) writes an in-toto Statement v1 with the
SLSA Provenance v1 predicate (:class:`Statement`) and signs it with its node key in a DSSE
envelope (:class:`StatementEnvelope`). Subjects are the revision's OMS root digest (the same one
its ``model.sig`` signs) and every file's sha256; ``resolvedDependencies`` names the source repo
and its ``gitCommit``. The chain lives beside the revision's signatures as
``provenance.intoto.jsonl``, one envelope per line in hop order: a peer hop keeps the statements
the previous nodes wrote and appends its own. Statements come back from peers and bundles, so
the models that write them are also the door they are read through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from .. import __version__
from ..context import Context
from ..errors import SignatureInvalid
from ..validation import Closed, Commit, Open, Sha256, problem
from .keys import Signer, signature_dir, write_atomic
from .oms import (
    PAYLOAD_TYPE,
    STATEMENT_TYPE,
    DsseSignature,
    InTotoEnvelope,
    KeyHint,
    dsse_envelope,
    dsse_open,
    manifest_of,
)
from .shipped import UpstreamSignature

PREDICATE_TYPE: Final = "https://slsa.dev/provenance/v1"
BUILD_TYPE: Final = "https://hubd.dev/provenance/mirror/v1"
CHAIN_FILE = "provenance.intoto.jsonl"


def _iso_time(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("time", "Input should be an ISO 8601 time") from None
    return value


# An ISO 8601 time, kept as written (what was signed).
Time = Annotated[
    StrictStr, AfterValidator(_iso_time), Field(json_schema_extra={"format": "date-time"})
]


class Digest(Open):
    sha256: Sha256


class Subject(Open):
    name: StrictStr
    digest: Digest


class ExternalParameters(Closed):
    repository: StrictStr
    revision: StrictStr
    source: StrictStr = Field(
        description="the repo URL on the source: the Hub, a peer, file://, bundle:"
    )
    uploader: StrictStr | None = Field(
        default=None, description="the name of the token that pushed the commit to this node"
    )


class InternalParameters(Closed):
    node: StrictStr
    upstreamSignature: UpstreamSignature | None = None


class CommitDigest(Open):
    gitCommit: Commit


class Dependency(Open):
    uri: Annotated[StrictStr, Field(pattern=r"^git\+")]
    digest: CommitDigest


class BuildDefinition(Open):
    buildType: Literal["https://hubd.dev/provenance/mirror/v1"]
    externalParameters: ExternalParameters
    internalParameters: InternalParameters
    resolvedDependencies: tuple[Dependency]


class Builder(Open):
    id: Annotated[StrictStr, Field(pattern=r"^urn:hubd:node:")]
    version: dict[str, StrictStr] = Field(default_factory=dict)


class BuildMetadata(Open):
    invocationId: StrictStr
    startedOn: Time
    finishedOn: Time


class RunDetails(Open):
    builder: Builder
    metadata: BuildMetadata


class Provenance(Open):
    buildDefinition: BuildDefinition
    runDetails: RunDetails


class Statement(Open):
    """The payload of each DSSE envelope in
    store/signatures/<org>/<name>/<commit>/provenance.intoto.jsonl (one envelope per line, hop
    order), signed by the recording node's key (keyid = sha256 hex of its PEM public key)."""

    model_config = ConfigDict(
        title="A hubd provenance statement: in-toto Statement v1 with the SLSA Provenance v1 "
        "predicate",
        serialize_by_alias=True,
    )

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: list[Subject] = Field(
        min_length=2,
        description="First the repo with the OMS root digest (sha256 over the sorted files' "
        "sha256, what model.sig signs), then every file with its sha256.",
    )
    predicateType: Literal["https://slsa.dev/provenance/v1"]
    predicate: Provenance


class KeyedSignature(DsseSignature):
    keyid: KeyHint


class StatementEnvelope(InTotoEnvelope):
    """A DSSE envelope of a :class:`Statement`, signed by the node that wrote it."""

    signatures: tuple[KeyedSignature]


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
    uploader: str | None = None  # the token's name, for a commit pushed to this node


def statement(hop: Hop, files: Mapping[str, str]) -> Statement:
    """The in-toto Statement v1 with the SLSA Provenance v1 predicate for ``hop``."""
    upstream = hop.upstream_signature
    return Statement(
        _type=STATEMENT_TYPE,
        subject=[
            Subject(name=hop.repo_id, digest=Digest(sha256=root_digest(files))),
            *(Subject(name=p, digest=Digest(sha256=files[p])) for p in sorted(files)),
        ],
        predicateType=PREDICATE_TYPE,
        predicate=Provenance(
            buildDefinition=BuildDefinition(
                buildType=BUILD_TYPE,
                externalParameters=ExternalParameters(
                    repository=hop.repo_id,
                    revision=hop.revision,
                    source=hop.source_url,
                    uploader=hop.uploader,
                ),
                internalParameters=InternalParameters(
                    node=hop.node,
                    upstreamSignature=UpstreamSignature.model_validate(upstream)
                    if upstream
                    else None,
                ),
                resolvedDependencies=(
                    Dependency(
                        uri=f"git+{hop.source_url}", digest=CommitDigest(gitCommit=hop.commit)
                    ),
                ),
            ),
            runDetails=RunDetails(
                builder=Builder(id=builder_id(hop.node), version={"hubd": __version__}),
                metadata=BuildMetadata(
                    invocationId=f"{hop.node}/{hop.repo_id}@{hop.commit}/"
                    f"{hop.finished.timestamp():.0f}",
                    startedOn=hop.started.isoformat(),
                    finishedOn=hop.finished.isoformat(),
                ),
            ),
        ),
    )


def envelope(key: ec.EllipticCurvePrivateKey, doc: Statement) -> StatementEnvelope:
    """A DSSE envelope of ``doc`` signed by ``key`` (keyid: the key's OMS hint)."""
    payload = json.dumps(
        doc.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    ).encode()
    return StatementEnvelope.model_validate(dsse_envelope(key, payload))


class CustodyHop(Closed):
    """One hop of the catalog's chain of custody (hubd.catalog.views.provenance_hop)."""

    hop: StrictInt = Field(ge=0)
    source: StrictStr
    commit: StrictStr
    node: StrictStr
    fetched_at: StrictStr = Field(json_schema_extra={"format": "date-time"})
    client: StrictStr


class StatementSummary(Closed):
    """One checked statement of a chain, as `hubd provenance --json` shows it."""

    builder: StrictStr = Field(description="runDetails.builder.id: urn:hubd:node:NAME")
    source: StrictStr
    commit: Commit
    finished: Time
    keyid: KeyHint
    signer: StrictStr | None = Field(
        description="the trusted name whose key verified it, null for a key outside the trust store"
    )
    upstream_signature: UpstreamSignature | None


class ProvenanceReport(Closed):
    """`hubd provenance --json`: the catalog's hops, the checked SLSA statements and what the
    trust policy makes of the revision."""

    model_config = ConfigDict(
        title="`hubd provenance --json`: a revision's chain of custody and its trust verdict"
    )

    repo: StrictStr
    commit: Commit
    provenance: list[CustodyHop]
    statements: list[StatementSummary] = Field(
        description="The revision's SLSA Provenance v1 statements (provenance.intoto.jsonl), in "
        "hop order, each checked."
    )
    ok: StrictBool = Field(description="whether the trust policy lets the revision be used")
    reasons: list[StrictStr]
    signers: list[StrictStr] = Field(description="trusted names whose signature holds")


SignatureName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._-]+\.sig$")]


class Attestations(Closed):
    """What a hubd node vouches for a revision with; a mirroring peer checks all of it against
    its trust store and policy before the revision becomes visible there."""

    model_config = ConfigDict(title="GET /api/hubd/models/{org}/{name}/revision/{rev}/attestations")

    repo: StrictStr
    commit: Commit
    provenance: list[CustodyHop] = Field(description="the catalog's chain of custody")
    signatures: dict[SignatureName, dict[str, Any]] = Field(
        description="OMS v1.0 bundles (oms-bundle.schema.json) by file name <key-hint>.sig, as "
        "this node stores them: the receiving node checks each (hubd.trust.oms.OmsBundle)",
        json_schema_extra={"additionalProperties": False},  # only names that match
    )
    statements: list[StatementEnvelope] = Field(
        description="DSSE envelopes of SLSA statements, hop order"
    )


@dataclass(frozen=True)
class Attested:
    """One statement of a chain, parsed; ``signer`` is the trusted name whose key verified it."""

    envelope: StatementEnvelope
    statement: Statement
    signer: str | None

    @property
    def keyid(self) -> str:
        return self.envelope.signatures[0].keyid

    @property
    def builder(self) -> str:
        return self.statement.predicate.runDetails.builder.id

    @property
    def subjects(self) -> dict[str, str]:
        return {s.name: s.digest.sha256 for s in self.statement.subject}

    def summary(self) -> StatementSummary:
        predicate = self.statement.predicate
        (dependency,) = predicate.buildDefinition.resolvedDependencies
        return StatementSummary(
            builder=self.builder,
            source=dependency.uri.removeprefix("git+"),
            commit=dependency.digest.gitCommit,
            finished=predicate.runDetails.metadata.finishedOn,
            keyid=self.keyid,
            signer=self.signer,
            upstream_signature=predicate.buildDefinition.internalParameters.upstreamSignature,
        )


def check_envelope(
    env: StatementEnvelope | Mapping[str, Any],
    signers: Sequence[Signer],
    commit: str,
    files: Mapping[str, str],
    label: str,
) -> Attested:
    """Parse a DSSE envelope of a SLSA statement about ``commit``; verify it if its key is trusted.

    A statement by a key outside the trust store is kept as a claim (``signer`` None). It is an
    error when a trusted key does not verify it, when it is about another commit, or when it
    names one of ``files`` with another digest (a hop may hold fewer or more files, never others).
    """
    try:
        envelope = StatementEnvelope.model_validate(env)
        doc = Statement.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise SignatureInvalid(f"{label}: malformed provenance statement: {problem(exc)}") from None
    attested = Attested(envelope, doc, None)
    subjects, about = attested.subjects, attested.summary().commit
    if about != commit:
        raise SignatureInvalid(f"{label}: the statement is about commit {about}, not {commit}")
    changed = sorted(p for p in set(files) & set(subjects) if files[p] != subjects[p])
    if changed:
        raise SignatureInvalid(f"{label}: attests other content for {', '.join(changed)}")
    signer = next((s for s in signers if s.hint == attested.keyid), None)
    if signer is None:
        return attested
    dsse_open(envelope, signer.key, PAYLOAD_TYPE, f"{label}: the statement")
    return Attested(envelope, doc, signer.name)


def chain_path(ctx: Context, repo_id: str, commit: str) -> Path:
    return signature_dir(ctx, repo_id, commit) / CHAIN_FILE


def read_chain(path: Path) -> list[StatementEnvelope]:
    """The envelopes of a chain file ([] when there is none)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    chain = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            chain.append(StatementEnvelope.model_validate_json(line))
        except ValidationError as exc:
            raise SignatureInvalid(
                f"{path}: malformed provenance chain: line {number}: {problem(exc)}"
            ) from None
    return chain


def extend_chain(
    ctx: Context,
    key: ec.EllipticCurvePrivateKey,
    hop: Hop,
    files: Mapping[str, str],
    inherited: Sequence[StatementEnvelope] = (),
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
    ctx: Context, repo_id: str, commit: str, envelopes: Sequence[StatementEnvelope]
) -> Path:
    """Write a revision's chain file: one envelope per line, in hop order."""
    path = chain_path(ctx, repo_id, commit)
    lines = (json.dumps(e.model_dump(mode="json"), sort_keys=True) + "\n" for e in envelopes)
    write_atomic(path, "".join(lines).encode())
    return path


def _builder_of(env: StatementEnvelope) -> str | None:
    try:
        return Statement.model_validate_json(env.payload).predicate.runDetails.builder.id
    except ValidationError:
        return None


def verify_chain(
    chain: Sequence[StatementEnvelope | Mapping[str, Any]],
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
