"""Tokens, auth.required and TLS on the daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MODEL, Result, hubd_process
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from huggingface_hub import snapshot_download
from support.fakehub import FakeHub
from test_server import node, raw, serving

from hubd.cluster.tokens import create_token, revoke_token
from hubd.context import Context
from hubd.errors import RepoNotFound
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.sources.registry import add_peer

Hubd = Callable[..., Result]


def test_tokens_cli_shows_secret_once(hubd: Hubd, home: Path) -> None:
    created = json.loads(hubd("tokens", "create", "--scope", "read", "--name", "ci", "--json").out)
    secret = created["token"]
    assert secret.startswith("hubd_") and created["scope"] == "read"
    listing = hubd("tokens", "ls", "--json")
    assert secret not in listing.out and json.loads(listing.out)[0]["name"] == "ci"
    assert secret.encode() not in (home / "catalog.db").read_bytes()
    assert hubd("tokens", "revoke", str(created["id"])).code == 0
    assert json.loads(hubd("tokens", "ls", "--json").out)[0]["revoked_at"]
    assert hubd("tokens", "revoke", "999").code == 3
    assert hubd("tokens", "create", "--scope", "admin").code == 2


def test_auth_required(ctx: Context, hub: FakeHub, tmp_path: Path) -> None:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    _, secret = create_token(guarded, "read", "peer b")
    path = f"/api/models/{MODEL}"
    with serving(guarded) as url:
        assert raw(url, "/healthz")[0] == 200
        status, body = raw(url, path)
        assert status == 401 and "bearer token" in json.loads(body)["error"]
        assert raw(url, path, {"Authorization": "Bearer hubd_wrong"})[0] == 401
        assert raw(url, path, {"Authorization": f"Bearer {secret}"})[0] == 200
        files = snapshot_download(MODEL, endpoint=url, token=secret, cache_dir=tmp_path / "hf")
        assert (Path(files) / "config.json").exists()

        token_file = tmp_path / "a.token"
        token_file.write_text(secret)
        peer_b = node(ctx.settings, tmp_path, "node-b", url)
        # Without a token the repo is not there, as on the Hub; the hint says to pass one.
        with pytest.raises(RepoNotFound, match="pass a token"):
            asyncio.run(mirror(peer_b, RepoRef.parse(MODEL)))
        add_peer(peer_b, "node-a", url, token_file=token_file)
        assert asyncio.run(mirror(peer_b, RepoRef.parse(MODEL))).source == url
        # Large files come in ranged parts: each part carries the token too.
        ranged = node(ctx.settings.model_copy(update={"part_size": 4096}), tmp_path, "node-c", url)
        add_peer(ranged, "node-a", url, token_file=token_file)
        fetched = asyncio.run(mirror(ranged, RepoRef.parse(MODEL)))
        assert fetched.source == url and fetched.bytes_transferred > 4096

        revoke_token(guarded, 1)
        assert raw(url, path, {"Authorization": f"Bearer {secret}"})[0] == 401


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.slow
def test_daemon_serves_https(ctx: Context, hub: FakeHub, home: Path, tmp_path: Path) -> None:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    cert, key = self_signed(tmp_path)
    url_file = home / "url"
    proc = hubd_process(
        "daemon",
        "--port",
        "0",
        "--url-file",
        str(url_file),
        env={"HUBD_TLS_CERT": str(cert), "HUBD_TLS_KEY": str(key)},
    )
    try:
        deadline = time.monotonic() + 20
        while not url_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        url = url_file.read_text()
        assert url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{url}/api/models/{MODEL}", context=trusted) as answer:
            assert json.loads(answer.read())["id"] == MODEL
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{url}/healthz", context=ssl.create_default_context())
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_half_tls_config_is_refused(
    hubd: Hubd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _ = self_signed(tmp_path)
    monkeypatch.setenv("HUBD_TLS_CERT", str(cert))
    result = hubd("daemon", "--port", "0")
    assert result.code == 2 and "go together" in result.err
