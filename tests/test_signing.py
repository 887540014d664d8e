"""Signatures (OMS v1.0), trust policy and export, through the CLI; interop with model_signing."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import jsonschema
import model_signing
import pytest
from conftest import LORA, MODEL, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from support.fakehub import FakeHub
from test_schemas import schema, validate

Hubd = Callable[..., Result]


@pytest.fixture
def mirrored(hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    assert hubd("mirror", LORA, "-q").code == 0


def write_key(path: Path, curve: ec.EllipticCurve | None = None) -> Path:
    """A private key PEM at ``path`` and its public key at ``path.pub``."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def blob_of(home: Path, hubd: Hubd, suffix: str) -> Path:
    files = json.loads(hubd("show", MODEL, "--json").out)["revisions"][0]["files"]
    sha = next(f["sha256"] for f in files if f["path"].endswith(suffix))
    blob = home / "store" / "blobs" / "sha256" / sha[:2] / sha
    blob.chmod(0o644)
    return blob


def set_policy(home: Path, text: str) -> None:
    (home / "trust").mkdir(parents=True, exist_ok=True)
    (home / "trust" / "policy.toml").write_text(text)


def test_keys_created_once_and_private(hubd: Hubd, home: Path) -> None:
    shown = json.loads(hubd("keys", "show", "--json").out)
    assert shown["curve"] == "secp256r1" and len(shown["hint"]) == 64
    assert (home / "keys" / "node.key").stat().st_mode & 0o777 == 0o600
    public = hubd("keys", "show", "--public").out
    assert public.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in public
    assert json.loads(hubd("keys", "show", "--json").out)["hint"] == shown["hint"]


def test_sign_verify_export_interop_with_model_signing(
    hubd: Hubd, mirrored: None, home: Path, tmp_path: Path
) -> None:
    signed = hubd("sign", MODEL, "--json")
    assert signed.code == 0, signed.err
    result = json.loads(signed.out)
    assert result["signer"] == "node"
    bundle = json.loads(Path(result["path"]).read_text())
    validate("oms-bundle.schema.json", bundle)

    verified = hubd("verify", MODEL, "--signatures")
    assert verified.code == 0, verified.err
    assert "signed by: node" in verified.out

    out = tmp_path / "export"
    exported = hubd("export", MODEL, "--to", str(out))
    assert exported.code == 0, exported.err
    assert (out / "model.sig").exists() and not any(p.is_symlink() for p in out.rglob("*"))
    node_pub = tmp_path / "node.pub"
    node_pub.write_text(hubd("keys", "show", "--public").out)
    # model_signing checks hubd's signature over the real files
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=node_pub).verify(
        out, out / "model.sig"
    )

    # ... and hubd checks model_signing's: a security team signs the exported directory (its
    # model.sig included, as `model_signing sign key DIR --signature ELSEWHERE` does)
    team = write_key(tmp_path / "team.key", ec.SECP384R1())
    team_sig = tmp_path / "team.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=team).sign(out, team_sig)
    untrusted = hubd("sign", MODEL, "--bundle", str(team_sig))
    assert untrusted.code == 6 and "not in the trust store" in untrusted.err
    assert hubd("trust", "add", "security-team", str(team.with_suffix(".pub"))).code == 0
    imported = hubd("sign", MODEL, "--bundle", str(team_sig))
    assert imported.code == 0 and "by security-team" in imported.out, imported.err

    set_policy(home, '[[rules]]\nrepo = "acme/tiny-*"\nsigners = ["security-team", "node"]\n')
    report = json.loads(hubd("verify", "--signatures", "--json").out)
    validate("verify-report.schema.json", report)
    assert report["ok"] is False  # the adapter lacks security-team's signature
    verdicts = {s["repo"]: s for s in report["signatures"]}
    assert verdicts[MODEL]["signers"] == ["node", "security-team"]
    assert verdicts[MODEL]["ok"] and not verdicts[LORA]["ok"]
    assert verdicts[LORA]["signers"] == ["node"]  # signed by the mirror itself
    assert [r.split(": ", 1)[1] for r in verdicts[LORA]["reasons"]] == [
        "needs a valid signature by security-team",
    ]
    failed = hubd("verify", LORA, "--signatures")
    assert failed.code == 6 and "needs a valid signature by security-team" in failed.err


def test_flipped_byte_and_swapped_files_are_rejected(
    hubd: Hubd, mirrored: None, home: Path, tmp_path: Path
) -> None:
    assert hubd("sign", MODEL).code == 0
    blob = blob_of(home, hubd, "00001-of-00002.safetensors")
    original = blob.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    flipped = hubd("verify", MODEL, "--signatures")
    assert flipped.code == 1 and "damaged" in flipped.err
    exported = hubd("export", MODEL, "--to", str(tmp_path / "x"))
    assert exported.code == 6 and "damaged" in exported.err and not (tmp_path / "x").exists()
    blob.write_bytes(original)

    # swap two files' contents in an exported copy: model_signing and hubd both refuse it
    out = tmp_path / "export"
    assert hubd("export", MODEL, "--to", str(out)).code == 0
    a, b = out / "model-00001-of-00002.safetensors", out / "model-00002-of-00002.safetensors"
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    node_pub = tmp_path / "node.pub"
    node_pub.write_text(hubd("keys", "show", "--public").out)
    with pytest.raises(ValueError, match="Hash mismatch"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=node_pub).verify(
            out, out / "model.sig"
        )
    # a bundle signed over the swapped copy does not match the catalog's revision
    team = write_key(tmp_path / "team.key")
    assert hubd("trust", "add", "team", str(team.with_suffix(".pub"))).code == 0
    swapped_sig = tmp_path / "swapped.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=team).sign(out, swapped_sig)
    refused = hubd("sign", MODEL, "--bundle", str(swapped_sig))
    assert refused.code == 6 and "does not match the signature" in refused.err
    assert "model-00001-of-00002.safetensors changed" in refused.err


def test_tampered_bundle_is_rejected(hubd: Hubd, mirrored: None, home: Path) -> None:
    path = Path(json.loads(hubd("sign", MODEL, "--json").out)["path"])
    bundle = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(bundle))
    result = hubd("verify", MODEL, "--signatures")
    assert result.code == 6 and "hubd: error:" in result.err
    assert "the signature does not verify" in result.err
    path.write_text("{not json")
    assert "malformed signature bundle" in hubd("verify", MODEL, "--signatures").err


def test_a_malformed_bundle_is_reported_by_the_field(
    hubd: Hubd, mirrored: None, home: Path
) -> None:
    path = Path(json.loads(hubd("sign", MODEL, "--json").out)["path"])
    good = json.loads(path.read_text())
    envelope = good["dsseEnvelope"]
    cases = [
        ({**good, "mediaType": "application/json"}, "mediaType: Input should be"),
        (
            {**good, "dsseEnvelope": {**envelope, "payload": "not base64!"}},
            "dsseEnvelope.payload: Input should be valid base64",
        ),
        (
            {**good, "dsseEnvelope": {**envelope, "signatures": envelope["signatures"] * 2}},
            "dsseEnvelope.signatures: Tuple should have at most 1 item",
        ),
    ]
    for bundle, message in cases:
        path.write_text(json.dumps(bundle))
        result = hubd("verify", MODEL, "--signatures")
        assert result.code == 6 and f"malformed signature bundle: {message}" in result.err, (
            result.err
        )


def test_trust_policy_allow_deny(hubd: Hubd, mirrored: None, home: Path, tmp_path: Path) -> None:
    from hubd.config import load_settings
    from hubd.context import Context
    from hubd.trust.policy import may_use

    ctx = Context.open(load_settings())
    commit = json.loads(hubd("show", MODEL, "--json").out)["revisions"][0]["commit"]
    assert may_use(ctx, MODEL, commit).ok  # no rule: allowed
    set_policy(home, '[[rules]]\nrepo = ["acme/*"]\nsigners = ["security-team"]\n')
    denied = may_use(ctx, MODEL, commit)
    assert not denied.ok and "no key named 'security-team'" in denied.reasons[0]

    team = write_key(tmp_path / "team.key")
    other = write_key(tmp_path / "other.key")
    assert hubd("trust", "add", "security-team", str(team.with_suffix(".pub"))).code == 0
    assert hubd("sign", MODEL, "--key", str(other)).code == 0  # untrusted key: no help
    denied = may_use(ctx, MODEL, commit)
    assert not denied.ok and "1 signature(s) by untrusted keys" in denied.reasons[0]
    assert hubd("sign", MODEL, "--key", str(team)).code == 0
    allowed = may_use(ctx, MODEL, commit)
    assert allowed.ok and allowed.signers == ["node", "security-team"]
    listing = json.loads(hubd("trust", "ls", "--json").out)
    assert [s["name"] for s in listing["signers"]] == ["node", "security-team"]
    assert listing["rules"] == [{"repo": ["acme/*"], "signers": ["security-team"]}]
    ctx.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nrepo = 'acme/*'\n", "rules[0].signers: Field required"),
        ("[[rules]]\nrepo = 'acme/*'\nsigners = []\n", "rules[0].signers: List should have"),
        ("[[rules]]\nrepo = []\nsigners = ['x']\n", "rules[0].repo: List should have"),
        ("[[rules]]\nrepo = 'a/*'\nsigners = ['../x']\n", "rules[0].signers[0]: String should"),
        ("[[rules]]\nrepo = 'a/*'\nsigners = ['x']\nnote = 1\n", "rules[0].note: Extra inputs"),
        ("oops = 1\n", "oops: Extra inputs are not permitted"),
        ("[[rules\n", "policy.toml"),
    ],
)
def test_bad_trust_policy(hubd: Hubd, mirrored: None, home: Path, text: str, message: str) -> None:
    set_policy(home, text)
    result = hubd("verify", MODEL, "--signatures")
    assert result.code == 2 and message in result.err
    if text != "[[rules\n":  # what parses as TOML, the schema refuses as the loader does
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(tomllib.loads(text), schema("trust-policy.schema.json"))


def test_bad_keys_are_refused(hubd: Hubd, home: Path, tmp_path: Path) -> None:
    ed = tmp_path / "ed.pub"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = hubd("trust", "add", "ed", str(ed))
    assert result.code == 2 and "ECDSA P-256 or P-384" in result.err
    pem = write_key(tmp_path / "k.key").with_suffix(".pub")
    assert hubd("trust", "add", "node", str(pem)).code == 2
    assert hubd("trust", "add", "../x", str(pem)).code == 2
    assert hubd("trust", "add", "team", str(pem)).code == 0
    other = write_key(tmp_path / "o.key").with_suffix(".pub")
    assert "already trusted with another key" in hubd("trust", "add", "team", str(other)).err
    assert hubd("sign", "acme/nothing").code == 3


def test_policy_schema_and_example() -> None:
    example = Path(__file__).parent.parent / "deploy" / "trust-policy.example.toml"
    jsonschema.validate(tomllib.loads(example.read_text()), schema("trust-policy.schema.json"))


def test_model_signing_cli_verifies_an_export(hubd: Hubd, home: Path, tmp_path: Path) -> None:
    """The command the issue names, on a published repo with a subdirectory and git files."""
    source = tmp_path / "finetune"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text('{"model_type": "llama"}')
    (source / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    (source / ".gitattributes").write_text("*.bin filter=lfs\n")
    assert hubd("add", str(source), "--repo", "acme/finetune").code == 0
    out = tmp_path / "export"
    assert hubd("export", "acme/finetune", "--to", str(out)).code == 0
    node_pub = tmp_path / "node.pub"
    node_pub.write_text(hubd("keys", "show", "--public").out)
    cli = [str(Path(sys.executable).parent / "model_signing"), "verify", "key", str(out)]
    args = ["--signature", str(out / "model.sig"), "--public_key", str(node_pub)]
    checked = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "Verification succeeded" in checked.stdout, checked.stderr
    (out / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    tampered = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)
    assert tampered.returncode == 1 and "Hash mismatch for" in tampered.stderr
    assert "sub/weights.bin" in tampered.stderr


def test_mirror_and_add_sign_with_the_node_key(hubd: Hubd, mirrored: None, home: Path) -> None:
    report = json.loads(hubd("verify", "--signatures", "--json").out)
    assert [s["signers"] for s in report["signatures"]] == [["node"], ["node"]]
    commit = report["signatures"][0]["commit"]
    signatures = home / "store" / "signatures" / MODEL / commit
    assert len(list(signatures.glob("*.sig"))) == 1
    assert hubd("rm", MODEL).code == 0
    assert not signatures.exists() and not (home / "store" / "signatures" / MODEL).exists()


def test_provenance_command(hubd: Hubd, mirrored: None, home: Path) -> None:
    shown = json.loads(hubd("provenance", MODEL, "--json").out)
    validate("provenance.schema.json", shown)
    assert shown["provenance"][0]["node"] == "test-node" and shown["signers"] == ["node"]
    set_policy(home, '[[rules]]\nrepo = "acme/*"\nsigners = ["security-team"]\n')
    text = hubd("provenance", f"{MODEL}@main").out
    assert "#0 " in text and "may NOT be used" in text and "security-team" in text
    assert hubd("provenance", f"{MODEL}@nope").code == 3


def test_air_gap_round_trip(
    hubd: Hubd, mirrored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A exports; node B adds the directory only if A's model.sig holds and A is trusted."""
    out = tmp_path / "usb"
    assert hubd("export", MODEL, "--to", str(out)).code == 0
    a_pub = tmp_path / "a.pub"
    a_pub.write_text(hubd("keys", "show", "--public").out)
    monkeypatch.setenv("HUBD_HOME", str(tmp_path / "node-b"))
    refused = hubd("add", str(out), "--repo", MODEL)
    assert refused.code == 6 and "not in the trust store" in refused.err
    assert hubd("trust", "add", "lab-a", str(a_pub)).code == 0
    added = hubd("add", str(out), "--repo", MODEL, "--json")
    assert added.code == 0 and json.loads(added.out)["signed_by"] == "lab-a", added.err
    shown = json.loads(hubd("show", MODEL, "--json").out)["revisions"][0]["files"]
    assert "model.sig" not in {f["path"] for f in shown}
    report = json.loads(hubd("verify", MODEL, "--signatures", "--json").out)
    assert report["signatures"][0]["signers"] == ["lab-a", "node"]
    config = out / "config.json"
    config.write_text(config.read_text() + " ")
    tampered = hubd("add", str(out), "--repo", "acme/other")
    assert tampered.code == 6 and "config.json changed" in tampered.err
