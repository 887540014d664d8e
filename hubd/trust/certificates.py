"""Organisation certificates: the x509 chains that OMS certificate bundles carry.

A certificate bundle (``model_signing sign certificate``, ``hubd sign --cert``) carries the
signing certificate and its issuers, leaf first. It counts when its chain leads to a CA in the
trust store *at verification time*: every link's signature, every certificate's validity
period, basic constraints on every issuer, and the leaf may sign code (key usage
digitalSignature; an extended key usage, if present, must allow codeSigning).
``cryptography.x509.verification`` builds and checks the path with extension policies for code
signing (its defaults are the Web PKI's, made for TLS); the leaf and the validity periods are
checked here first so that an expired or wrong-usage certificate is named plainly.

``model_signing`` 1.1.1 checks a chain at the leaf's notBefore, so it accepts an expired
certificate; hubd does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ..errors import ConfigError, SignatureInvalid
from .oms import CURVES

PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
_E = TypeVar("_E", bound=x509.ExtensionType)
_CODE_SIGNING = {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
_USAGE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_NOISE = re.compile(
    r"^validation failed: |candidates exhausted: |Python extension validator failed: \w+: "
    r"| \(encountered processing <Certificate.*$",
    re.S,
)


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


def load(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_pem(data, str(path))


def parse_pem(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"{what}: not a PEM certificate ({exc})") from None


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _usage_problem(usage: x509.ExtendedKeyUsage | None) -> str | None:
    if usage is None or _CODE_SIGNING & set(usage):
        return None
    names = ", ".join(_USAGE_NAMES.get(oid, oid.dotted_string) for oid in usage)
    return f"its extended key usage ({names}) does not allow code signing"


def _issuer_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not issue signing certificates (None if it may)."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return "it is not a CA certificate (basicConstraints CA:TRUE)"
    usage = _extension(cert, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return "its key usage does not allow keyCertSign"
    return _usage_problem(_extension(cert, x509.ExtendedKeyUsage))


def _signer_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign models (None if it may)."""
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        return "it is a CA certificate; models are signed with a leaf certificate"
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or not usage.digital_signature:
        return "its key usage does not include digitalSignature"
    problem = _usage_problem(_extension(cert, x509.ExtendedKeyUsage))
    if problem:
        return problem
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        return f"its key is {type(key).__name__}; OMS signing needs ECDSA P-256 or P-384"
    return None


def validity_problem(cert: x509.Certificate, at: datetime) -> str | None:
    if at < cert.not_valid_before_utc:
        return f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if at > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def load_ca(data: bytes, what: str) -> x509.Certificate:
    """The one CA certificate in PEM ``data``; ConfigError if it cannot issue signing certs."""
    certs = parse_pem(data, what)
    if len(certs) != 1:
        raise ConfigError(f"{what}: holds {len(certs)} certificates; trust one CA per name")
    problem = _issuer_problem(certs[0])
    if problem:
        raise ConfigError(f"{what}: {subject(certs[0])} cannot be a trusted CA: {problem}")
    return certs[0]


def check_signing_chain(chain: Sequence[x509.Certificate], at: datetime, label: str) -> None:
    """SignatureInvalid unless every certificate is valid at ``at`` and the leaf may sign."""
    for position, cert in enumerate(chain):
        problem = validity_problem(cert, at)
        if problem:
            role = "signing certificate" if position == 0 else "certificate"
            raise SignatureInvalid(f"{label}: {role} {subject(cert)} {problem}")
    problem = _signer_problem(chain[0])
    if problem:
        raise SignatureInvalid(
            f"{label}: certificate {subject(chain[0])} may not sign models: {problem}"
        )


def _validate_issuer(_policy: Policy, cert: x509.Certificate, _ext: object) -> None:
    problem = _issuer_problem(cert)
    if problem:
        raise ValueError(f"{subject(cert)} may not issue signing certificates: {problem}")


# The leaf is checked by check_signing_chain; permit_all still refuses unknown critical
# extensions. Issuers need basicConstraints (CA:TRUE and the path length are the verifier's own
# checks) and usages that allow issuing code-signing certificates.
_LEAF_POLICY = ExtensionPolicy.permit_all()
_ISSUER_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, _validate_issuer
)


def verify_chain(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
    label: str,
) -> x509.Certificate | None:
    """The trusted anchor that ``chain`` (leaf first) leads to at time ``at``.

    None when no certificate in the chain names one of ``anchors`` as its issuer (an untrusted
    signer, like a key outside the trust store); SignatureInvalid when it does but the chain,
    a validity period or a usage fails.
    """
    candidates = [a for a in anchors if any(c.issuer == a.subject or c == a for c in chain)]
    if not candidates:
        return None
    check_signing_chain(chain, at, label)
    current = [a for a in candidates if validity_problem(a, at) is None]
    if not current:
        anchor = candidates[0]
        problem = validity_problem(anchor, at)
        raise SignatureInvalid(f"{label}: trusted CA {subject(anchor)} {problem}")
    verifier = (
        PolicyBuilder()
        .store(Store(current))
        .time(at)
        .extension_policies(ee_policy=_LEAF_POLICY, ca_policy=_ISSUER_POLICY)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise SignatureInvalid(
            f"{label}: the certificate chain of {subject(chain[0])} does not lead to trusted CA "
            f"{' or '.join(subject(a) for a in current)}: {_NOISE.sub('', str(exc))}"
        ) from None
    return verified.chain[-1]
