"""SLSA provenance statements, attestations carried between peers, upstream model.sig."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MODEL, Result
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from sqlalchemy import select
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_schemas import validate
from test_server import node, serving

from hubd.catalog.models import Repo
from hubd.catalog.views import provenance_hop
from hubd.config import Settings
from hubd.context import Context
from hubd.errors import SignatureInvalid, UntrustedSigner, UpstreamError
from hubd.ops.mirror import MirrorResult, mirror
from hubd.refs import RepoRef
from hubd.server import app as server_app
from hubd.sources import huggingface
from hubd.trust import oms as signing
from hubd.trust.keys import node_key, signature_dir, stored_signatures
from hubd.trust.oms import public_pem
from hubd.trust.policy import may_use
from hubd.trust.provenance import Attestations, chain_path, read_chain, root_digest
from hubd.validation import problem

Hubd = Callable[..., Result]
SIGNED = "acme/signed-llama"


def run(ctx: Context, ref: str) -> MirrorResult:
    return asyncio.run(mirror(ctx, RepoRef.parse(ref)))


def statements(ctx: Context, repo: str, commit: str) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in read_chain(chain_path(ctx, repo, commit))]


def trust(ctx: Context, name: str, key: ec.EllipticCurvePublicKey, rule: str | None) -> None:
    """Trust ``key`` as ``name`` on ``ctx``'s node; with ``rule``, require it for that glob."""
    (ctx.settings.home / "trust").mkdir(parents=True, exist_ok=True)
    (ctx.settings.home / "trust" / f"{name}.pem").write_bytes(public_pem(key))
    if rule:
        (ctx.settings.home / "trust" / "policy.toml").write_text(
            f'[[rules]]\nrepo = "{rule}"\nsigners = ["{name}"]\n'
        )


def tamper_statement(
    ctx: Context, commit: str, where: tuple[str, ...], key: str, value: str
) -> None:
    """Change one field of the node's SLSA statement for MODEL, keeping its old signature."""
    chain = chain_path(ctx, MODEL, commit)
    (line,) = chain.read_text().splitlines()
    env = json.loads(line)
    doc = json.loads(base64.b64decode(env["payload"]))
    section = doc
    for name in where:
        section = section[name]
    section[key] = value
    env["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    chain.write_text(json.dumps(env) + "\n")


def stranger_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def nothing_visible(ctx: Context, repo: str) -> bool:
    with ctx.catalog() as session:
        none_in_catalog = session.scalar(select(Repo).where(Repo.repo_id == repo)) is None
    store = ctx.store
    return (
        none_in_catalog
        and not (store.snapshots_dir / repo).exists()
        and not (store.signatures_dir / repo).exists()
    )


def test_a_mirror_writes_a_signed_slsa_statement(ctx: Context, hub: FakeHub) -> None:
    result = run(ctx, MODEL)
    commit = result.commit
    (doc,) = statements(ctx, MODEL, commit)
    validate("slsa-provenance.schema.json", doc)
    files = _catalog_files(ctx, commit)
    subjects = {s["name"]: s["digest"]["sha256"] for s in doc["subject"]}
    assert subjects == {MODEL: root_digest(files), **files}
    build = doc["predicate"]["buildDefinition"]
    assert build["resolvedDependencies"] == [
        {"uri": f"git+{hub.endpoint}/{MODEL}", "digest": {"gitCommit": commit}}
    ]
    assert doc["predicate"]["runDetails"]["builder"]["id"] == "urn:hubd:node:test-node"
    # The root subject is the digest the node's OMS signature signs.
    (sig,) = stored_signatures(ctx, MODEL, commit)
    payload = json.loads(base64.b64decode(json.loads(sig.read_bytes())["dsseEnvelope"]["payload"]))
    assert payload["subject"][0]["digest"]["sha256"] == root_digest(files)
    # Mirroring again replaces this node's statement instead of piling up duplicates.
    run(ctx, MODEL)
    assert len(statements(ctx, MODEL, commit)) == 1


def _catalog_files(ctx: Context, commit: str) -> dict[str, str]:
    with ctx.catalog() as session:
        repo = session.scalar(select(Repo).where(Repo.repo_id == MODEL))
        assert repo is not None
        (revision,) = [r for r in repo.revisions if r.commit == commit]
        return {f.path: f.sha256 for f in revision.files}


@pytest.fixture
def node_a(ctx: Context, hub: FakeHub) -> Iterator[tuple[Context, str]]:
    """Node A has mirrored the model from the hub and serves it."""
    run(ctx, MODEL)
    with serving(ctx) as url:
        yield ctx, url


def test_a_peer_hop_appends_its_statement_and_keeps_the_signatures(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path, hubd: Hubd
) -> None:
    a, url = node_a
    b = node(settings, tmp_path, "node-b", url)
    try:
        trust(b, "node-a", node_key(a).public_key(), "acme/*")
        commit = run(b, MODEL).commit
        docs = statements(b, MODEL, commit)
        builders = [d["predicate"]["runDetails"]["builder"]["id"] for d in docs]
        assert builders == ["urn:hubd:node:test-node", "urn:hubd:node:node-b"]
        assert docs[1]["predicate"]["buildDefinition"]["resolvedDependencies"][0]["uri"] == (
            f"git+{url}/{MODEL}"
        )
        hints = {p.stem for p in stored_signatures(b, MODEL, commit)}
        assert hints == {
            signing.key_hint(node_key(a).public_key()),
            signing.key_hint(node_key(b).public_key()),
        }
    finally:
        b.close()
    shown = hubd("--home", str(tmp_path / "node-b"), "provenance", MODEL, "--json").json()
    validate("provenance.schema.json", shown)
    assert [s["signer"] for s in shown["statements"]] == ["node-a", "node"]
    assert shown["ok"] and shown["signers"] == ["node", "node-a"]


def test_attestations_api_matches_its_schema(node_a: tuple[Context, str]) -> None:
    _, url = node_a
    with urllib.request.urlopen(f"{url}/api/hubd/models/{MODEL}/revision/main/attestations") as r:
        body = json.load(r)
    validate("attestations.schema.json", body)
    assert len(body["signatures"]) == 1 and len(body["statements"]) == 1
    with urllib.request.urlopen(f"{url}/api/hubd/models/{MODEL}/revision/main/manifest") as r:
        validate("manifest.schema.json", json.load(r))


def refused_on_b(
    settings: Settings,
    tmp_path: Path,
    url: str,
    trusted: tuple[str, ec.EllipticCurvePublicKey, str | None],
    error: type[Exception],
    match: str,
) -> None:
    """Node B, trusting ``trusted`` (name, key, rule glob), refuses A's revision; B is unchanged."""
    b = node(settings, tmp_path, "node-b", url)
    try:
        trust(b, *trusted)
        with pytest.raises(error, match=match):
            run(b, MODEL)
        assert nothing_visible(b, MODEL)
    finally:
        b.close()


def test_a_peer_without_the_required_signer_is_refused_before_anything_is_visible(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path
) -> None:
    _, url = node_a
    stranger = stranger_key()
    refused_on_b(
        settings,
        tmp_path,
        url,
        ("security-team", stranger, "acme/*"),
        UntrustedSigner,
        "needs a valid signature by security-team",
    )


def test_a_peer_serving_a_signature_that_does_not_match_is_refused(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path
) -> None:
    a, url = node_a
    commit = run(a, MODEL).commit
    files = _catalog_files(a, commit)
    files["config.json"] = "0" * 64  # A's key signs content that is not what A serves
    key = node_key(a)
    path = signature_dir(a, MODEL, commit) / f"{signing.key_hint(key.public_key())}.sig"
    path.write_bytes(signing.sign(key, MODEL.split("/")[1], files))
    trusted = ("node-a", key.public_key(), None)
    refused_on_b(settings, tmp_path, url, trusted, SignatureInvalid, "config.json changed")


def test_a_tampered_provenance_statement_from_a_peer_is_refused(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path
) -> None:
    a, url = node_a
    commit = run(a, MODEL).commit
    external = ("predicate", "buildDefinition", "externalParameters")
    tamper_statement(a, commit, external, "source", "https://evil.example")
    trusted = ("node-a", node_key(a).public_key(), None)
    message = "statement: the signature does not verify"
    refused_on_b(settings, tmp_path, url, trusted, SignatureInvalid, message)


@pytest.fixture
def org_key(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    """The key an organisation signs its Hub releases with (and the CLI pointed at the hub)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return ec.generate_private_key(ec.SECP256R1())


def signed_repo(hub: FakeHub, key: ec.EllipticCurvePrivateKey, tamper: bool = False) -> None:
    """A Hub repo that ships its own model.sig (OMS), as `model_signing sign key` makes one."""
    files = tiny_model_files(seed=5)
    digests = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    if tamper:
        digests["config.json"] = "1" * 64
    hub.add_repo(SIGNED, {**files, "model.sig": signing.sign(key, "signed-llama", digests)})


def test_an_upstream_model_sig_is_verified_and_recorded(
    ctx: Context, hub: FakeHub, org_key: ec.EllipticCurvePrivateKey, hubd: Hubd
) -> None:
    signed_repo(hub, org_key)
    result = run(ctx, SIGNED)
    assert result.upstream_signature is not None
    assert result.upstream_signature.model_dump() == {
        "status": "untrusted",
        "signer": "",
        "key": signing.key_hint(org_key.public_key()),
    }
    trust(ctx, "acme-release", org_key.public_key(), SIGNED)
    again = hubd("mirror", SIGNED, "--json").json()
    validate("mirror-result.schema.json", again)
    assert again["upstream_signature"]["status"] == "verified"
    assert again["upstream_signature"]["signer"] == "acme-release"
    shown = hubd("provenance", SIGNED, "--json").json()
    assert shown["ok"] and "acme-release" in shown["signers"]
    assert shown["statements"][-1]["upstream_signature"]["signer"] == "acme-release"
    assert "the source's own model.sig: verified (acme-release)" in hubd("provenance", SIGNED).out


def test_an_upstream_model_sig_that_does_not_match_fails_the_mirror(
    ctx: Context, hub: FakeHub, org_key: ec.EllipticCurvePrivateKey, hubd: Hubd
) -> None:
    signed_repo(hub, org_key, tamper=True)
    trust(ctx, "acme-release", org_key.public_key(), None)
    failed = hubd("mirror", SIGNED)
    assert failed.code == 6
    assert "upstream model.sig" in failed.err and "config.json changed" in failed.err
    assert nothing_visible(ctx, SIGNED)


def test_verify_signatures_checks_the_provenance_chain(
    ctx: Context, hub: FakeHub, hubd: Hubd
) -> None:
    commit = run(ctx, MODEL).commit
    assert hubd("verify", MODEL, "--signatures").code == 0
    metadata = ("predicate", "runDetails", "metadata")
    tamper_statement(ctx, commit, metadata, "finishedOn", "2020-01-01T00:00:00+00:00")
    checked = hubd("verify", MODEL, "--signatures")
    assert checked.code == 6 and "provenance #0: the statement: the signature" in checked.out


def test_a_malformed_statement_or_chain_is_reported_by_the_field(
    ctx: Context, hub: FakeHub, hubd: Hubd
) -> None:
    """The statement and envelope models refuse, naming the field, before any signature check."""
    commit = run(ctx, MODEL).commit
    metadata = ("predicate", "runDetails", "metadata")
    tamper_statement(ctx, commit, metadata, "finishedOn", "yesterday")
    checked = hubd("verify", MODEL, "--signatures")
    assert checked.code == 6, checked.err
    assert (
        "provenance #0: malformed provenance statement: "
        "predicate.runDetails.metadata.finishedOn: Input should be an ISO 8601 time"
    ) in checked.out
    chain = chain_path(ctx, MODEL, commit)
    envelope = json.loads(chain.read_text())
    envelope["signatures"][0]["keyid"] = "../../escape"
    chain.write_text(json.dumps(envelope) + "\n")
    checked = hubd("verify", MODEL, "--signatures")
    assert checked.code == 6, checked.err
    assert (
        "malformed provenance chain: line 1: signatures[0].keyid: String should match pattern"
    ) in checked.out


def test_the_attestations_body_is_refused_by_the_field() -> None:
    body = {"repo": MODEL, "commit": "0" * 40, "provenance": [], "signatures": {}}
    statement = {"payload": "e30=", "payloadType": signing.PAYLOAD_TYPE, "signatures": [{}]}
    with pytest.raises(ValidationError) as caught:
        Attestations.model_validate({**body, "statements": [statement]})
    assert problem(caught.value) == "statements[0].signatures[0].sig: Field required"
    with pytest.raises(ValidationError) as caught:
        Attestations.model_validate({**body, "statements": [], "signatures": {"../x.sig": {}}})
    assert problem(caught.value).startswith("signatures['../x.sig'] (the name): String should")


def test_a_partial_mirror_from_a_peer_is_vouched_for_by_its_whole_repo_signature(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path
) -> None:
    """--include leaves files out; the peer's signature of the whole repo still vouches for
    every file the partial revision holds (and would refuse one that differs)."""
    a, url = node_a
    b = node(settings, tmp_path, "node-b", url)
    try:
        trust(b, "node-a", node_key(a).public_key(), "acme/*")
        result = asyncio.run(mirror(b, RepoRef.parse(MODEL), include=["*.json"]))
        assert result.files < len(tiny_model_files(seed=0))
        verdict = may_use(b, MODEL, result.commit)
        assert verdict.ok and verdict.signers == ["node", "node-a"]
    finally:
        b.close()


def test_a_partial_mirror_of_a_repo_shipping_model_sig(
    ctx: Context, hub: FakeHub, org_key: ec.EllipticCurvePrivateKey
) -> None:
    signed_repo(hub, org_key)
    trust(ctx, "acme-release", org_key.public_key(), SIGNED)
    result = asyncio.run(mirror(ctx, RepoRef.parse(SIGNED), include=["config.json"]))
    assert result.upstream_signature is not None
    assert result.upstream_signature.status == "verified"
    assert may_use(ctx, SIGNED, result.commit).ok


def test_a_peer_signature_whose_hint_is_a_path_is_refused(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path
) -> None:
    """The hint names the file a carried bundle is kept in: it must be a digest, not a path."""
    a, url = node_a
    commit = run(a, MODEL).commit
    (own,) = stored_signatures(a, MODEL, commit)
    bundle = json.loads(own.read_bytes())
    bundle["verificationMaterial"]["publicKey"]["hint"] = "../../../../../escape"
    (own.parent / "other.sig").write_text(json.dumps(bundle))
    message = r"verificationMaterial\.publicKey\.hint: String should match pattern"
    refused_on_b(settings, tmp_path, url, ("x", stranger_key(), None), SignatureInvalid, message)
    assert not list(tmp_path.rglob("escape*"))


def test_attestations_larger_than_the_limit_are_refused(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = node_a
    monkeypatch.setattr(huggingface, "ATTESTATIONS_LIMIT", 1024)  # A's are a few KiB
    refused_on_b(settings, tmp_path, url, ("x", stranger_key(), None), UpstreamError, "1024 bytes")


def test_a_peer_with_malformed_custody_hops_is_an_upstream_error(
    node_a: tuple[Context, str], settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hop's time goes into the catalog: one that is not a time fails cleanly, not later."""
    _, url = node_a
    real = provenance_hop

    def garbled(hop: Any) -> dict[str, Any]:
        return {**real(hop), "fetched_at": "yesterday"}

    monkeypatch.setattr(server_app, "provenance_hop", garbled)
    message = "malformed attestations"
    refused_on_b(settings, tmp_path, url, ("x", stranger_key(), None), UpstreamError, message)
