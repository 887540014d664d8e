"""Certificate signing (OMS x509 chains to an organisation CA), both ways with model_signing."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import model_signing
import pytest
from conftest import MODEL, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL.crypto import X509StoreContextError
from support.fakehub import FakeHub
from test_schemas import validate

Hubd = Callable[..., Result]
CODE_SIGNING = [ExtendedKeyUsageOID.CODE_SIGNING]
CA_POLICY = '[[rules]]\nrepo = "acme/*"\nsigners = ["acme-ca"]\n'


def _usage(*, sign: bool = False, issue: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=issue,
        crl_sign=issue,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Authority:
    name: str
    key: CertificateIssuerPrivateKeyTypes
    cert: x509.Certificate


def _issue(
    name: str,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: Authority | None,
    *,
    ca: bool,
    usage: x509.KeyUsage | None,
    eku: list[x509.ObjectIdentifier] | None = None,
    valid: tuple[timedelta, timedelta] = (timedelta(days=-1), timedelta(days=30)),
) -> x509.Certificate:
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0])
        .not_valid_after(now + valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, critical=False)
    if usage:
        builder = builder.add_extension(usage, critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def authority(
    name: str,
    parent: Authority | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    valid: tuple[timedelta, timedelta] = (timedelta(days=-1), timedelta(days=30)),
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> Authority:
    key = key or ec.generate_private_key(ec.SECP384R1())
    cert = _issue(name, key, parent, ca=True, usage=_usage(issue=True), eku=eku, valid=valid)
    return Authority(name, key, cert)


def pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass
class Pki:
    """An organisation CA, an intermediate it issued, and leaves issued by the intermediate."""

    dir: Path
    root: Authority
    inter: Authority

    @property
    def ca_pem(self) -> Path:
        return pem(self.dir / "ca.pem", self.root.cert)

    @property
    def chain_pem(self) -> Path:
        return pem(self.dir / "chain.pem", self.inter.cert)

    def leaf(
        self,
        tag: str,
        *,
        usage: x509.KeyUsage | None = None,
        eku: list[x509.ObjectIdentifier] | None = CODE_SIGNING,
        valid: tuple[timedelta, timedelta] = (timedelta(days=-1), timedelta(days=30)),
        issuer: Authority | None = None,
    ) -> tuple[Path, Path]:
        """(certificate PEM, private key PEM) of a new signing certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            f"{tag}@acme.example",
            key,
            issuer or self.inter,
            ca=False,
            usage=usage or _usage(sign=True),
            eku=eku,
            valid=valid,
        )
        key_path = self.dir / f"{tag}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pem(self.dir / f"{tag}.pem", cert), key_path


def make_pki(directory: Path, org: str) -> Pki:
    directory.mkdir()
    root = authority(f"{org} Root CA")
    return Pki(directory, root, authority(f"{org} Signing CA", root))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", "Acme")


@pytest.fixture
def exported(hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """acme/tiny-llama mirrored and exported: a directory model_signing can sign and check."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    out = tmp_path / "export"
    assert hubd("export", MODEL, "--to", str(out)).code == 0
    return out


def set_policy(home: Path, text: str) -> None:
    (home / "trust").mkdir(parents=True, exist_ok=True)
    (home / "trust" / "policy.toml").write_text(text)


def ms_sign(model: Path, cert: Path, key: Path, chain: list[Path], signature: Path) -> Path:
    model_signing.signing.Config().use_certificate_signer(
        private_key=key, signing_certificate=cert, certificate_chain=chain
    ).sign(model, signature)
    return signature


def state(hubd: Hubd, home: Path) -> tuple[list[str], str]:
    """The store's signature files and the catalog's view of the repo."""
    signatures = home / "store" / "signatures"
    files = sorted(str(p.relative_to(signatures)) for p in signatures.rglob("*") if p.is_file())
    return files, hubd("show", MODEL, "--json").out


def test_hubd_signs_with_a_certificate_and_model_signing_verifies(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path
) -> None:
    cert, key = pki.leaf("release")
    args = ["--cert", str(cert), "--chain", str(pki.chain_pem), "--key", str(key)]
    before = state(hubd, home)
    untrusted = hubd("sign", MODEL, *args)
    assert untrusted.code == 6 and "leads to no CA in the trust store" in untrusted.err
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    no_chain = hubd("sign", MODEL, "--cert", str(cert), "--key", str(key))  # no intermediate
    assert no_chain.code == 6 and "(up to CN=Acme Signing CA)" in no_chain.err
    assert "--chain" in no_chain.err and state(hubd, home) == before
    signed = hubd("sign", MODEL, *args, "--json")
    assert signed.code == 0, signed.err
    result = signed.json()
    assert result["signer"] == "acme-ca"
    bundle = json.loads(Path(result["path"]).read_text())
    validate("oms-bundle.schema.json", bundle)
    material = bundle["verificationMaterial"]
    assert "publicKey" not in material and material["tlogEntries"] == []
    raw = [
        base64.b64decode(c["rawBytes"]) for c in material["x509CertificateChain"]["certificates"]
    ]
    assert [x509.load_der_x509_certificate(d) for d in raw] == [
        x509.load_pem_x509_certificate(cert.read_bytes()),
        pki.inter.cert,
    ]

    set_policy(home, CA_POLICY)
    verified = hubd("verify", MODEL, "--signatures", "--json")
    assert verified.code == 0, verified.err
    assert verified.json()["signatures"][0]["signers"] == ["acme-ca", "node"]

    # model_signing checks it over the exported files, with the organisation CA as its root
    (exported / "model.sig").write_text(Path(result["path"]).read_text())
    model_signing.verifying.Config().use_certificate_verifier(
        certificate_chain=[pki.ca_pem]
    ).verify(exported, exported / "model.sig")
    cli = [str(Path(sys.executable).parent / "model_signing"), "verify", "certificate"]
    ca = ["--signature", str(exported / "model.sig"), "--certificate_chain", str(pki.ca_pem)]
    checked = subprocess.run([*cli, str(exported), *ca], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "Verification succeeded" in checked.stdout, checked.stderr
    # ... and refuses it against another root
    other = pem(tmp_path / "other.pem", authority("Acme Root CA").cert)
    with pytest.raises(X509StoreContextError, match="unable to get local issuer certificate"):
        model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[other]).verify(
            exported, exported / "model.sig"
        )


def test_model_signing_signs_with_a_certificate_and_hubd_verifies(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path
) -> None:
    cert, key = pki.leaf("security")
    sig = ms_sign(exported, cert, key, [pki.chain_pem], tmp_path / "cert.sig")
    validate("oms-bundle.schema.json", json.loads(sig.read_text()))
    before = state(hubd, home)
    untrusted = hubd("sign", MODEL, "--bundle", str(sig))
    assert untrusted.code == 6, untrusted.err
    assert "leads to no CA in the trust store" in untrusted.err
    assert "CN=security@acme.example" in untrusted.err and "CN=Acme Root CA" in untrusted.err
    assert state(hubd, home) == before

    added = hubd("trust", "add", "acme-ca", str(pki.ca_pem))
    assert added.code == 0 and "CA CN=Acme Root CA" in added.out, added.err
    listing = hubd("trust", "ls", "--json").json()["signers"]
    assert [(s["name"], s["kind"]) for s in listing] == [("node", "key"), ("acme-ca", "ca")]
    assert listing[1]["subject"] == "CN=Acme Root CA" and listing[1]["algorithm"] == "secp384r1"
    assert "acme-ca  ca" in hubd("trust", "ls").out

    set_policy(home, CA_POLICY)
    assert hubd("verify", MODEL, "--signatures").code == 6  # not signed by acme-ca yet
    imported = hubd("sign", MODEL, "--bundle", str(sig))
    assert imported.code == 0 and "by acme-ca" in imported.out, imported.err
    report = hubd("verify", MODEL, "--signatures", "--json")
    assert report.code == 0, report.err
    assert report.json()["signatures"][0]["signers"] == ["acme-ca", "node"]

    from hubd.config import load_settings
    from hubd.context import Context
    from hubd.trust.policy import may_use

    ctx = Context.open(load_settings())
    commit = report.json()["signatures"][0]["commit"]
    try:
        verdict = may_use(ctx, MODEL, commit)
        assert verdict.ok and verdict.signers == ["acme-ca", "node"]
    finally:
        ctx.close()


BAD_LEAVES = {
    "expired": (
        {"valid": (timedelta(days=-30), timedelta(days=-1))},
        "signing certificate CN=bad@acme.example expired on",
    ),
    "not yet valid": (
        {"valid": (timedelta(days=1), timedelta(days=30))},
        "signing certificate CN=bad@acme.example is not valid before",
    ),
    "no digitalSignature": (
        {"usage": _usage(issue=False)},
        "may not sign models: its key usage does not include digitalSignature",
    ),
    "serverAuth only": (
        {"eku": [ExtendedKeyUsageOID.SERVER_AUTH]},
        "may not sign models: its extended key usage (serverAuth) does not allow code signing",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LEAVES))
def test_bad_certificates_are_rejected(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path, case: str
) -> None:
    kw, message = BAD_LEAVES[case]
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    set_policy(home, CA_POLICY)
    cert, key = pki.leaf("bad", **kw)  # type: ignore[arg-type]
    before = state(hubd, home)
    # model_signing 1.1.1 signs with any certificate that matches the key: hubd refuses it
    sig = ms_sign(exported, cert, key, [pki.chain_pem], tmp_path / "bad.sig")
    refused = hubd("sign", MODEL, "--bundle", str(sig))
    assert refused.code == 6 and message in refused.err, refused.err
    # and refuses to make one
    args = ["--cert", str(cert), "--chain", str(pki.chain_pem), "--key", str(key)]
    made = hubd("sign", MODEL, *args)
    assert made.code == 6 and message in made.err, made.err
    assert state(hubd, home) == before
    failed = hubd("verify", MODEL, "--signatures")
    assert failed.code == 6 and "needs a valid signature by acme-ca" in failed.err


def test_expired_intermediate_untrusted_and_impostor_chains(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path
) -> None:
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    before = state(hubd, home)

    old = authority("Old Signing CA", pki.root, valid=(timedelta(days=-60), timedelta(days=-2)))
    cert, key = pki.leaf("a", issuer=old)
    sig = ms_sign(exported, cert, key, [pem(tmp_path / "old.pem", old.cert)], tmp_path / "a.sig")
    refused = hubd("sign", MODEL, "--bundle", str(sig))
    assert refused.code == 6 and "certificate CN=Old Signing CA expired on" in refused.err

    # a whole other organisation: untrusted, like a key outside the trust store
    other = make_pki(tmp_path / "other", "Other")
    cert, key = other.leaf("b")
    sig = ms_sign(exported, cert, key, [other.chain_pem], tmp_path / "b.sig")
    refused = hubd("sign", MODEL, "--bundle", str(sig))
    assert refused.code == 6 and "leads to no CA in the trust store" in refused.err

    # an impostor with the trusted CA's name (but not its key) issued the intermediate
    fake = make_pki(tmp_path / "impostor", "Acme")
    cert, key = fake.leaf("c")
    sig = ms_sign(exported, cert, key, [fake.chain_pem], tmp_path / "c.sig")
    refused = hubd("sign", MODEL, "--bundle", str(sig))
    assert refused.code == 6, refused.err
    assert "the certificate chain of CN=c@acme.example does not lead to trusted CA" in refused.err
    assert "<Certificate" not in refused.err

    # a CA that is not allowed to issue code-signing certificates
    tls = authority("Acme TLS CA", pki.root, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    cert, key = pki.leaf("d", issuer=tls)
    sig = ms_sign(exported, cert, key, [pem(tmp_path / "tls.pem", tls.cert)], tmp_path / "d.sig")
    refused = hubd("sign", MODEL, "--bundle", str(sig))
    assert refused.code == 6 and "CN=Acme TLS CA may not issue signing certificates" in refused.err
    assert "(serverAuth) does not allow code signing" in refused.err
    assert state(hubd, home) == before


def test_tampered_chains_are_rejected(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path
) -> None:
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    cert, key = pki.leaf("good")
    good = json.loads(ms_sign(exported, cert, key, [pki.chain_pem], tmp_path / "g.sig").read_text())
    before = state(hubd, home)

    def refused(bundle: object, name: str) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(bundle))
        result = hubd("sign", MODEL, "--bundle", str(path))
        assert result.code == 6 and "hubd: error:" in result.err, result.err
        return result.err

    certificates = good["verificationMaterial"]["x509CertificateChain"]["certificates"]
    inter = bytearray(base64.b64decode(certificates[1]["rawBytes"]))
    inter[-5] ^= 0x01  # inside the intermediate's own signature
    broken = json.loads(json.dumps(good))
    broken["verificationMaterial"]["x509CertificateChain"]["certificates"][1]["rawBytes"] = (
        base64.b64encode(bytes(inter)).decode()
    )
    assert "does not lead to trusted CA CN=Acme Root CA" in refused(broken, "broken.sig")

    other_cert, _ = pki.leaf("other")  # another valid leaf, but not the key that signed
    swapped = json.loads(json.dumps(good))
    der = x509.load_pem_x509_certificate(other_cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    swapped["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = (
        base64.b64encode(der).decode()
    )
    assert "the signature does not verify" in refused(swapped, "swapped.sig")

    garbage = json.loads(json.dumps(good))
    garbage["verificationMaterial"]["x509CertificateChain"]["certificates"][1]["rawBytes"] = (
        base64.b64encode(b"not a certificate").decode()
    )
    assert "certificate #2 of the chain is not an x509 certificate" in refused(garbage, "x.sig")
    assert state(hubd, home) == before

    # a tampered bundle in the store fails `hubd verify --signatures`
    commit = json.loads(before[1])["revisions"][0]["commit"]
    stored = home / "store" / "signatures" / MODEL / commit / "tampered.sig"
    stored.write_text(json.dumps(broken))
    failed = hubd("verify", MODEL, "--signatures")
    assert failed.code == 6 and "does not lead to trusted CA" in failed.err


def test_malformed_certificate_bundles_are_reported_by_the_field(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, tmp_path: Path
) -> None:
    cert, key = pki.leaf("good")
    good = json.loads(ms_sign(exported, cert, key, [pki.chain_pem], tmp_path / "g.sig").read_text())
    material = good["verificationMaterial"]
    cases = {
        "empty": (
            {**material, "x509CertificateChain": {"certificates": []}},
            "verificationMaterial.x509CertificateChain.certificates: List should have at least 1",
        ),
        "both": (
            {**material, "publicKey": {"hint": "0" * 64}},
            "verificationMaterial: both a public key and a certificate chain",
        ),
    }
    before = state(hubd, home)
    for name, (changed, message) in cases.items():
        path = tmp_path / f"{name}.sig"
        path.write_text(json.dumps({**good, "verificationMaterial": changed}))
        refused = hubd("sign", MODEL, "--bundle", str(path))
        assert refused.code == 6, refused.err
        assert f"malformed signature bundle: {message}" in refused.err, refused.err
    assert state(hubd, home) == before


def test_certificates_are_checked_at_verification_time(
    hubd: Hubd, exported: Path, pki: Pki, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    set_policy(home, CA_POLICY)
    cert, key = pki.leaf("release", valid=(timedelta(days=-1), timedelta(days=10)))
    args = ["--cert", str(cert), "--chain", str(pki.chain_pem), "--key", str(key)]
    assert hubd("sign", MODEL, *args).code == 0
    assert hubd("verify", MODEL, "--signatures").code == 0

    import hubd.trust.policy as trust

    class Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Later:  # type: ignore[override]
            return cls.fromtimestamp(datetime.now(UTC).timestamp() + 20 * 86400, UTC)

    monkeypatch.setattr(trust, "datetime", Later)
    failed = hubd("verify", MODEL, "--signatures")
    assert (
        failed.code == 6 and "signing certificate CN=release@acme.example expired on" in failed.err
    )


def test_trust_add_refuses_what_cannot_be_a_ca(hubd: Hubd, home: Path, pki: Pki) -> None:
    leaf, _ = pki.leaf("not-a-ca")
    refused = hubd("trust", "add", "leaf", str(leaf))
    assert refused.code == 2 and "cannot be a trusted CA: it is not a CA certificate" in refused.err
    both = pem(pki.dir / "both.pem", pki.root.cert, pki.inter.cert)
    refused = hubd("trust", "add", "both", str(both))
    assert refused.code == 2 and "holds 2 certificates" in refused.err
    old = authority("Old CA", valid=(timedelta(days=-60), timedelta(days=-2)))
    refused = hubd("trust", "add", "old", str(pem(pki.dir / "old.pem", old.cert)))
    assert refused.code == 2 and "CA CN=Old CA expired on" in refused.err
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0
    assert hubd("trust", "add", "acme-ca", str(pki.ca_pem)).code == 0  # the same: a no-op
    other = pem(pki.dir / "other.pem", authority("Acme Root CA").cert)
    again = hubd("trust", "add", "acme-ca", str(other))
    assert again.code == 2 and "already trusted with another key or certificate" in again.err
    assert not (home / "trust" / "leaf.pem").exists() and not (home / "trust" / "old.pem").exists()
    usage = hubd("sign", MODEL, "--cert", str(leaf))
    assert usage.code == 2 and "--cert needs the certificate's private key" in usage.err


def test_an_rsa_organisation_ca(hubd: Hubd, exported: Path, tmp_path: Path) -> None:
    """Organisation CAs often have RSA keys; only the signing certificate must be ECDSA."""
    root = authority("Acme RSA Root", key=rsa.generate_private_key(65537, 2048))
    pki = Pki(tmp_path, root, authority("Acme Signing CA", root))
    assert hubd("trust", "add", "acme-rsa", str(pki.ca_pem)).code == 0
    assert hubd("trust", "ls", "--json").json()["signers"][1]["algorithm"] == "rsa-2048"
    cert, key = pki.leaf("release")
    args = ["--cert", str(cert), "--chain", str(pki.chain_pem), "--key", str(key)]
    signed = hubd("sign", MODEL, *args, "--json")
    assert signed.code == 0 and signed.json()["signer"] == "acme-rsa", signed.err
    report = hubd("verify", MODEL, "--signatures", "--json")
    assert report.json()["signatures"][0]["signers"] == ["acme-rsa", "node"]
    sig = ms_sign(exported, cert, key, [pki.chain_pem], tmp_path / "ms.sig")
    imported = hubd("sign", MODEL, "--bundle", str(sig))
    assert imported.code == 0 and "by acme-rsa" in imported.out, imported.err
