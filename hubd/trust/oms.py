"""OpenSSF Model Signing (OMS v1.0) bundles, built and checked with `cryptography` alone.

A bundle is a Sigstore bundle (v0.3, no transparency log) holding a DSSE envelope whose payload
is an in-toto Statement v1 with predicate type ``https://model_signing/signature/v1.0`` and
``files`` serialization. Its verification material is either a public key hint (key signing)
or an x509 certificate chain, leaf first, base64 DER (certificate signing). This is the shape
``model_signing`` 1.1.1 writes and reads, so either side verifies the other's signatures:
``model_signing verify key DIR --signature DIR/model.sig --public_key node.pub``, or
``model_signing verify certificate DIR --signature … --certificate_chain ca.pem``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..errors import ConfigError, SignatureInvalid

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SIGNATURE_FILE = "model.sig"
HINT = re.compile(r"[0-9a-f]{64}")
# What model_signing leaves out of a directory by default, plus the signature file itself: the
# same paths are left out of hubd's manifests so that an exported directory verifies as is.
IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore", SIGNATURE_FILE)
CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


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


def statement(name: str, manifest: Mapping[str, str]) -> dict[str, Any]:
    """The in-toto statement: resources sorted by name, subject = sha256 of their digests."""
    names = sorted(manifest)
    root = hashlib.sha256(b"".join(bytes.fromhex(manifest[n]) for n in names)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": list(IGNORE_PATHS),
            },
            "resources": [{"name": n, "algorithm": "sha256", "digest": manifest[n]} for n in names],
        },
    }


def _material(public: ec.EllipticCurvePublicKey, chain: Sequence[x509.Certificate]) -> Any:
    if not chain:
        return {"publicKey": {"hint": key_hint(public)}, "tlogEntries": []}
    if chain[0].public_key() != public:
        raise ConfigError(
            f"signing certificate {chain[0].subject.rfc4514_string()} is not for this private key"
        )
    certificates = [
        {"rawBytes": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()}
        for c in chain
    ]
    return {"x509CertificateChain": {"certificates": certificates}, "tlogEntries": []}


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
    payload = json.dumps(statement(name, manifest), indent=2).encode()
    signature = private_key.sign(pae(payload), ec.ECDSA(_hash_for(public)))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, indent=2).encode()


def dsse_envelope(
    private_key: ec.EllipticCurvePrivateKey, payload: bytes, payload_type: str = PAYLOAD_TYPE
) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` signed by ``private_key`` (keyid: its OMS hint)."""
    public = check_key(private_key, "signing key")
    signature = private_key.sign(pae(payload, payload_type), ec.ECDSA(_hash_for(public)))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_hint(public), "sig": base64.b64encode(signature).decode()}],
    }


def dsse_open(
    envelope: Any, key: ec.EllipticCurvePublicKey, payload_type: str, label: str
) -> bytes:
    """The payload of a DSSE envelope of ``payload_type`` once ``key``'s signature holds."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        (entry,) = envelope["signatures"]
        signature = base64.b64decode(entry["sig"], validate=True)
        kind = envelope["payloadType"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise SignatureInvalid(f"{label}: malformed DSSE envelope") from None
    if kind != payload_type:
        raise SignatureInvalid(f"{label}: payload type {kind!r}, expected {payload_type!r}")
    try:
        key.verify(signature, pae(payload, payload_type), ec.ECDSA(_hash_for(key)))
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
    payload_type: str
    signature: bytes
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def parse(cls, data: bytes, label: str) -> Bundle:
        try:
            doc = json.loads(data)
            if doc["mediaType"] != BUNDLE_MEDIA_TYPE:
                raise SignatureInvalid(f"{label}: not an OMS bundle ({doc['mediaType']!r})")
            envelope = doc["dsseEnvelope"]
            material = doc["verificationMaterial"]
            hint = (material.get("publicKey") or {}).get("hint")
            chain = _chain(material, label)
            if chain and hint:
                raise SignatureInvalid(f"{label}: both a public key and a certificate chain")
            if hint and not HINT.fullmatch(str(hint)):  # it names the file a bundle is kept in
                raise SignatureInvalid(f"{label}: publicKey.hint is not a sha256 hex digest")
            return cls(
                hint=key_hint(chain[0].public_key()) if chain else str(hint) if hint else None,
                payload=base64.b64decode(envelope["payload"], validate=True),
                payload_type=str(envelope["payloadType"]),
                signature=base64.b64decode(envelope["signatures"][0]["sig"], validate=True),
                chain=chain,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error):
            raise SignatureInvalid(f"{label}: malformed signature bundle") from None

    def verify(self, key: ec.EllipticCurvePublicKey, label: str) -> Signed:
        """Check the signature with ``key`` and return what it signed."""
        if self.hint is not None and self.hint != key_hint(key):
            raise SignatureInvalid(f"{label}: signed by another key (hint {self.hint[:16]}…)")
        if self.payload_type != PAYLOAD_TYPE:
            raise SignatureInvalid(f"{label}: payload type {self.payload_type!r} is not in-toto")
        try:
            key.verify(self.signature, pae(self.payload), ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            raise SignatureInvalid(f"{label}: the signature does not verify") from None
        return _signed_manifest(self.payload, label)


def _chain(material: Any, label: str) -> tuple[x509.Certificate, ...]:
    """The certificates of ``x509CertificateChain`` (none for a key bundle)."""
    if "x509CertificateChain" not in material:
        return ()
    entries = material["x509CertificateChain"]["certificates"]
    if not isinstance(entries, list) or not entries:
        raise SignatureInvalid(f"{label}: empty certificate chain")
    chain = []
    for index, entry in enumerate(entries, 1):
        try:
            chain.append(
                x509.load_der_x509_certificate(base64.b64decode(entry["rawBytes"], validate=True))
            )
        except (ValueError, binascii.Error):
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
        doc = json.loads(payload)
        if doc["_type"] != STATEMENT_TYPE or doc["predicateType"] != PREDICATE_TYPE:
            raise SignatureInvalid(f"{label}: not an OMS v1.0 in-toto statement")
        serialization_ = doc["predicate"]["serialization"]
        if serialization_["method"] != "files" or serialization_["hash_type"] != "sha256":
            raise SignatureInvalid(
                f"{label}: serialization {serialization_['method']}/"
                f"{serialization_['hash_type']} is not supported (only files/sha256)"
            )
        resources = doc["predicate"]["resources"]
        manifest = {str(r["name"]): str(r["digest"]) for r in resources}
        if any(r["algorithm"] != "sha256" for r in resources) or len(manifest) != len(resources):
            raise SignatureInvalid(f"{label}: resources are not unique sha256 digests")
        root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources))
        (subject,) = doc["subject"]
        if subject["digest"]["sha256"] != root.hexdigest():
            raise SignatureInvalid(f"{label}: subject digest does not match the resources")
        ignore = tuple(str(p) for p in serialization_.get("ignore_paths", ()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SignatureInvalid(f"{label}: malformed in-toto statement") from None
    return Signed(manifest, ignore)


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
