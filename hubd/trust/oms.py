"""OpenSSF Model Signing (OMS v1.0) bundles, built and checked with `cryptography` alone.

A bundle (:class:`OmsBundle`) is a Sigstore bundle (v0.3, no transparency log) holding a DSSE
envelope whose payload is an in-toto Statement v1 (:class:`OmsStatement`) with predicate type
``https://model_signing/signature/v1.0`` and ``files`` serialization. Its verification material
is either a public key hint (key signing) or an x509 certificate chain, leaf first, base64 DER
(certificate signing). This is the shape ``model_signing`` 1.1.1 writes and reads, so either side
verifies the other's signatures:
``model_signing verify key DIR --signature DIR/model.sig --public_key node.pub``, or
``model_signing verify certificate DIR --signature … --certificate_chain ca.pem``.

Bundles come from peers, bundles and Hub repos: the models are the door (their shape), the
functions here the cryptography (what is signed, by whom, over which digests).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from pydantic import (
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..errors import ConfigError, SignatureInvalid
from ..validation import Open, Sha256, problem
from .shipped import SIGNATURE_FILE

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://model_signing/signature/v1.0"
# What model_signing leaves out of a directory by default, plus the signature file itself: the
# same paths are left out of hubd's manifests so that an exported directory verifies as is.
IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_FILE)
CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


def _base64(value: Any) -> bytes:
    """Strict base64 (no characters outside the alphabet); bytes are hubd's own, as they are."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("base64_type", "Input should be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64", "Input should be valid base64") from None


Base64 = Annotated[
    bytes,
    PlainValidator(_base64),
    PlainSerializer(lambda data: base64.b64encode(data).decode(), return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
# Names the file a carried bundle is kept in (<hint>.sig): a digest, never a path.
KeyHint = Annotated[
    StrictStr,
    Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the signer's PEM SubjectPublicKeyInfo"
    ),
]


class DsseSignature(Open):
    sig: Base64
    keyid: StrictStr = ""


class Envelope(Open):
    """A DSSE envelope: one signature over the PAE of ``payloadType`` and ``payload``."""

    payload: Base64
    payloadType: StrictStr
    signatures: tuple[DsseSignature] = Field(description="exactly one")


class InTotoEnvelope(Envelope):
    payloadType: Literal["application/vnd.in-toto+json"]


class PublicKeyIdentifier(Open):
    """Key signing: which key signed (older model_signing bundles carry no hint)."""

    hint: KeyHint | None = None


class X509Certificate(Open):
    rawBytes: Base64 = Field(description="base64 of the DER certificate")


class X509CertificateChain(Open):
    certificates: list[X509Certificate] = Field(
        min_length=1,
        description="the signing certificate first, then its issuers towards the organisation CA "
        "(which may be left out)",
    )


class VerificationMaterial(Open):
    """A public key hint (key signing) or a certificate chain (certificate signing), not both."""

    publicKey: PublicKeyIdentifier | None = None
    x509CertificateChain: X509CertificateChain | None = None
    tlogEntries: list[dict[str, Any]] = Field(
        default_factory=list, description="hubd writes none and checks none"
    )

    @model_validator(mode="after")
    def _one_signer(self) -> VerificationMaterial:
        if self.x509CertificateChain and self.publicKey and self.publicKey.hint:
            raise PydanticCustomError("material", "both a public key and a certificate chain")
        return self


class OmsBundle(Open):
    """What `hubd sign` writes to store/signatures/<org>/<name>/<commit>/<key-hint>.sig and
    `hubd export` to model.sig, and what hubd accepts from peers, bundles and Hub repos; the
    payload is a base64 in-toto Statement v1 with predicateType
    https://model_signing/signature/v1.0. Key signing names the key by publicKey.hint;
    certificate signing (`hubd sign --cert`, `model_signing sign certificate`) carries the x509
    chain instead."""

    model_config = ConfigDict(
        title="OpenSSF Model Signing v1.0 signature (Sigstore bundle, key or certificate)"
    )

    mediaType: Literal["application/vnd.dev.sigstore.bundle.v0.3+json"]
    verificationMaterial: VerificationMaterial
    dsseEnvelope: InTotoEnvelope

    @classmethod
    def parse(cls, data: bytes, label: str) -> OmsBundle:
        """Validate a bundle's JSON; SignatureInvalid names the field that is wrong."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SignatureInvalid(f"{label}: malformed signature bundle: {problem(exc)}") from None


class Serialization(Open):
    method: StrictStr
    hash_type: StrictStr
    allow_symlinks: StrictBool = False
    ignore_paths: list[StrictStr] = Field(default_factory=list)


class Resource(Open):
    name: StrictStr
    algorithm: StrictStr
    digest: StrictStr


class OmsPredicate(Open):
    serialization: Serialization
    resources: list[Resource]


class RootDigest(Open):
    sha256: Sha256


class OmsSubject(Open):
    name: StrictStr
    digest: RootDigest


class OmsStatement(Open):
    """The payload: every file's digest, and their root as the one subject."""

    model_config = ConfigDict(serialize_by_alias=True)

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: tuple[OmsSubject]
    predicateType: Literal["https://model_signing/signature/v1.0"]
    predicate: OmsPredicate


def _hash_for(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return CURVES[key.curve.name]()


def check_key(key: object, what: str) -> ec.EllipticCurvePublicKey:
    """The public key if it is ECDSA P-256/P-384 (what OMS key signing and hubd support)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in CURVES:
        name = getattr(getattr(public, "curve", None), "name", type(public).__name__)
        raise ConfigError(
            f"{what}: unsupported key ({name}); OMS key signing needs ECDSA P-256 or P-384"
        )
    return public


def public_pem(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(key: CertificatePublicKeyTypes) -> str:
    """sha256 hex of the PEM SubjectPublicKeyInfo: model_signing's publicKey.hint."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def manifest_of(
    files: Iterable[tuple[str, str]], ignore: Iterable[str] = IGNORE_PATHS
) -> dict[str, str]:
    """path -> sha256 of what a signature covers: ignored paths (and what is under them) out."""
    prefixes = [p.strip("/") for p in ignore]
    return {
        path: sha
        for path, sha in files
        if not any(path == p or path.startswith(f"{p}/") for p in prefixes)
    }


def statement(name: str, manifest: Mapping[str, str]) -> OmsStatement:
    """The in-toto statement: resources sorted by name, subject = sha256 of their digests."""
    names = sorted(manifest)
    root = hashlib.sha256(b"".join(bytes.fromhex(manifest[n]) for n in names)).hexdigest()
    return OmsStatement(
        _type=STATEMENT_TYPE,
        subject=(OmsSubject(name=name, digest=RootDigest(sha256=root)),),
        predicateType=PREDICATE_TYPE,
        predicate=OmsPredicate(
            serialization=Serialization(
                method="files",
                hash_type="sha256",
                allow_symlinks=False,
                ignore_paths=list(IGNORE_PATHS),
            ),
            resources=[Resource(name=n, algorithm="sha256", digest=manifest[n]) for n in names],
        ),
    )


def _material(
    public: ec.EllipticCurvePublicKey, chain: Sequence[x509.Certificate]
) -> VerificationMaterial:
    if not chain:
        return VerificationMaterial(publicKey=PublicKeyIdentifier(hint=key_hint(public)))
    if chain[0].public_key() != public:
        raise ConfigError(
            f"signing certificate {chain[0].subject.rfc4514_string()} is not for this private key"
        )
    certificates = [
        X509Certificate(rawBytes=c.public_bytes(serialization.Encoding.DER)) for c in chain
    ]
    return VerificationMaterial(
        x509CertificateChain=X509CertificateChain(certificates=certificates)
    )


def sign(
    private_key: ec.EllipticCurvePrivateKey,
    name: str,
    manifest: Mapping[str, str],
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """An OMS v1.0 bundle (JSON bytes) signing ``manifest`` (path -> sha256).

    With ``chain`` (the signing certificate of ``private_key`` first, then its issuers) it is a
    certificate bundle, as ``model_signing sign certificate`` writes; else a key bundle.
    """
    public = check_key(private_key, "signing key")
    material = _material(public, chain)
    payload = json.dumps(statement(name, manifest).model_dump(mode="json"), indent=2).encode()
    signature = private_key.sign(pae(payload), ec.ECDSA(_hash_for(public)))
    bundle = OmsBundle(
        mediaType=BUNDLE_MEDIA_TYPE,
        verificationMaterial=material,
        dsseEnvelope=InTotoEnvelope(
            payload=payload,
            payloadType=PAYLOAD_TYPE,
            signatures=(DsseSignature(sig=signature, keyid=""),),
        ),
    )
    return json.dumps(bundle.model_dump(mode="json", exclude_none=True), indent=2).encode()


def dsse_envelope(
    private_key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = PAYLOAD_TYPE
) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` signed by ``private_key`` (keyid: its OMS hint), as JSON."""
    public = check_key(private_key, "signing key")
    signature = private_key.sign(pae(payload, payload_type), ec.ECDSA(_hash_for(public)))
    envelope = Envelope(
        payload=payload,
        payloadType=payload_type,
        signatures=(DsseSignature(sig=signature, keyid=key_hint(public)),),
    )
    return envelope.model_dump(mode="json")


def dsse_open(
    envelope: Any, key: ec.EllipticCurvePublicKey, payload_type: str, label: str
) -> bytes:
    """The payload of a DSSE envelope (an :class:`Envelope` or its JSON) of ``payload_type``
    once ``key``'s signature holds."""
    try:
        opened = Envelope.model_validate(envelope)
    except ValidationError as exc:
        raise SignatureInvalid(f"{label}: malformed DSSE envelope: {problem(exc)}") from None
    payload, kind, (entry,) = opened.payload, opened.payloadType, opened.signatures
    if kind != payload_type:
        raise SignatureInvalid(f"{label}: payload type {kind!r}, expected {payload_type!r}")
    try:
        key.verify(entry.sig, pae(payload, payload_type), ec.ECDSA(_hash_for(key)))
    except InvalidSignature:
        raise SignatureInvalid(f"{label}: the signature does not verify") from None
    return payload


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle, not yet verified: enough to pick the key that should check it.

    ``hint`` is the signing key's (``publicKey.hint``, or computed from the leaf certificate of
    a certificate bundle, whose ``chain`` is leaf first); None for old hint-less key bundles.
    """

    hint: str | None
    payload: bytes
    signature: bytes
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def parse(cls, data: bytes, label: str) -> Bundle:
        doc = OmsBundle.parse(data, label)
        material, envelope = doc.verificationMaterial, doc.dsseEnvelope
        chain = _chain(material.x509CertificateChain, label)
        hint = material.publicKey.hint if material.publicKey else None
        return cls(
            hint=key_hint(chain[0].public_key()) if chain else hint,
            payload=envelope.payload,
            signature=envelope.signatures[0].sig,
            chain=chain,
        )

    def verify(self, key: ec.EllipticCurvePublicKey, label: str) -> Signed:
        """Check the signature with ``key`` and return what it signed."""
        if self.hint is not None and self.hint != key_hint(key):
            raise SignatureInvalid(f"{label}: signed by another key (hint {self.hint[:16]}…)")
        try:
            key.verify(self.signature, pae(self.payload), ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            raise SignatureInvalid(f"{label}: the signature does not verify") from None
        return _signed_manifest(self.payload, label)


def _chain(material: X509CertificateChain | None, label: str) -> tuple[x509.Certificate, ...]:
    """The certificates of ``x509CertificateChain`` (none for a key bundle)."""
    if material is None:
        return ()
    chain = []
    for index, entry in enumerate(material.certificates, 1):
        try:
            chain.append(x509.load_der_x509_certificate(entry.rawBytes))
        except ValueError:
            raise SignatureInvalid(
                f"{label}: certificate #{index} of the chain is not an x509 certificate"
            ) from None
    return tuple(chain)


@dataclass(frozen=True)
class Signed:
    """A verified statement: path -> sha256, and the paths the signer left out."""

    manifest: dict[str, str]
    ignore_paths: tuple[str, ...]


def _signed_manifest(payload: bytes, label: str) -> Signed:
    try:
        doc = OmsStatement.model_validate_json(payload)
    except ValidationError as exc:
        raise SignatureInvalid(f"{label}: malformed in-toto statement: {problem(exc)}") from None
    serialization_ = doc.predicate.serialization
    if serialization_.method != "files" or serialization_.hash_type != "sha256":
        raise SignatureInvalid(
            f"{label}: serialization {serialization_.method}/"
            f"{serialization_.hash_type} is not supported (only files/sha256)"
        )
    resources = doc.predicate.resources
    manifest = {r.name: r.digest for r in resources}
    if any(r.algorithm != "sha256" for r in resources) or len(manifest) != len(resources):
        raise SignatureInvalid(f"{label}: resources are not unique sha256 digests")
    try:
        root = hashlib.sha256(b"".join(bytes.fromhex(r.digest) for r in resources))
    except ValueError:
        raise SignatureInvalid(
            f"{label}: malformed in-toto statement: a digest is not hex"
        ) from None
    if doc.subject[0].digest.sha256 != root.hexdigest():
        raise SignatureInvalid(f"{label}: subject digest does not match the resources")
    return Signed(manifest, tuple(serialization_.ignore_paths))


def compare(signed: Signed, files: Mapping[str, str], label: str, complete: bool = True) -> None:
    """Raise SignatureInvalid naming every file added, missing or changed since signing.

    ``files`` is the whole revision; the signer's own ``ignore_paths`` decide what it covers.
    A ``model.sig`` (the repo's own signature, or one someone made of an export) is not model
    content, so it is left out on both sides. ``complete=False`` lets the signature cover
    files the revision does not hold (a mirror limited by --include): every file it does hold
    must still be signed, with the digest it has.
    """
    actual = manifest_of(files.items(), (*signed.ignore_paths, SIGNATURE_FILE))
    signed_files = {p: d for p, d in signed.manifest.items() if p != SIGNATURE_FILE}
    problems = [f"{p} is not signed" for p in sorted(set(actual) - set(signed_files))]
    if complete:
        problems += [f"{p} is missing" for p in sorted(set(signed_files) - set(actual))]
    problems += [
        f"{p} changed (signed sha256 {signed_files[p][:16]}…, is {actual[p][:16]}…)"
        for p in sorted(set(signed_files) & set(actual))
        if signed_files[p] != actual[p]
    ]
    if problems:
        raise SignatureInvalid(
            f"{label}: content does not match the signature: " + "; ".join(problems)
        )
