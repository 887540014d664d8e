"""`hubd verify --repair`: bit-rot is quarantined and fetched again from a peer or the Hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, Result
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_schemas import validate
from test_server import node, serving

from hubd.config import Settings
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

Hubd = Callable[..., Result]
SHARD = "model-00001-of-00002.safetensors"
ORIGINAL = tiny_model_files(seed=0)


@pytest.fixture
def mirrored(hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """MODEL mirrored from the loopback Hub; returns its commit."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    commit: str = hubd("show", MODEL, "--json").json()["revisions"][0]["commit"]
    return commit


def blob_path(home: Path, hubd: Hubd, path: str) -> Path:
    files = hubd("show", MODEL, "--json").json()["revisions"][0]["files"]
    sha = next(f["sha256"] for f in files if f["path"] == path)
    return home / "store" / "blobs" / "sha256" / sha[:2] / sha


def flip_byte(blob: Path) -> bytes:
    """Bit-rot in a stored (read-only) blob; returns the damaged bytes."""
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    return bytes(data)


def quarantined(home: Path) -> list[Path]:
    directory = home / "store" / "quarantine"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_repair_from_the_hub(hubd: Hubd, hub: FakeHub, home: Path, mirrored: str) -> None:
    blob = blob_path(home, hubd, SHARD)
    flip_byte(blob)
    found = hubd("verify")
    assert found.code == 1 and f"DAMAGED {MODEL}@{mirrored[:12]} {SHARD}" in found.out
    assert "hubd verify --repair" in found.err
    hub.requests.clear()

    repaired = hubd("verify", "--repair", "--json")
    report = repaired.json()
    validate("verify-report.schema.json", report)
    assert report["ok"] is True and [d["path"] for d in report["damaged"]] == [SHARD]
    assert report["repairs"] == [
        {
            "sha256": blob.name,
            "repaired": True,
            "source": hub.endpoint,
            "quarantine": None,
            "reason": None,
        }
    ]
    fetched = {r.path.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r.path}
    assert fetched == {SHARD}  # only the damaged blob moved
    assert blob.read_bytes() == ORIGINAL[SHARD] and quarantined(home) == []
    assert "all ok" in hubd("verify").out
    assert hubd("verify", "--signatures").code == 0  # the re-signed revision still matches


def test_hub_stopped_leaves_the_blob_quarantined(
    hubd: Hubd, hub: FakeHub, home: Path, mirrored: str
) -> None:
    blob = blob_path(home, hubd, SHARD)
    damaged = flip_byte(blob)
    hub.stop()
    result = hubd("verify", MODEL, "--repair")
    assert result.code == 1
    assert "hubd: error: 1 damaged file(s) could not be repaired" in result.err
    assert f"STILL DAMAGED {MODEL}@{mirrored[:12]} {SHARD}: {MODEL}@{mirrored[:12]}:" in result.out
    (kept,) = quarantined(home)
    assert f"damaged copy kept in {kept}" in result.out
    assert kept.name.startswith(blob.name) and kept.read_bytes() == damaged
    assert not blob.exists()  # nothing corrupt where a verified blob is expected
    again = hubd("verify", "--json")  # still reported, now as missing
    assert again.code == 1 and json.loads(again.out)["damaged"][0]["actual"] is None


def test_corrupt_source_then_recovered(hubd: Hubd, hub: FakeHub, home: Path, mirrored: str) -> None:
    blob = blob_path(home, hubd, SHARD)
    flip_byte(blob)
    hub.corrupt.add(SHARD)
    failed = hubd("verify", "--repair", "--json")
    assert failed.code == 1
    (repair,) = json.loads(failed.out)["repairs"]
    assert repair["repaired"] is False and "sha256 mismatch" in repair["reason"]
    assert repair["quarantine"] == str(quarantined(home)[0])
    assert not blob.exists()

    hub.corrupt.clear()  # the missing blob is fetched on the next run; its old copy goes
    fixed = hubd("verify", "--repair", "--json").json()
    assert fixed["damaged"][0]["actual"] is None and fixed["repairs"][0]["repaired"] is True
    assert blob.read_bytes() == ORIGINAL[SHARD] and quarantined(home) == []


def test_missing_readme_alone_is_repaired(
    hubd: Hubd, hub: FakeHub, home: Path, mirrored: str
) -> None:
    """The mirror refuses a selection of metadata files only; repair must still get them."""
    blob = blob_path(home, hubd, "README.md")
    blob.chmod(0o644)
    blob.unlink()
    hub.requests.clear()
    result = hubd("verify", "--repair")
    assert result.code == 0, result.err
    assert f"REPAIRED {MODEL}@{mirrored[:12]} README.md from {hub.endpoint}" in result.out
    assert blob.read_bytes() == ORIGINAL["README.md"]
    fetched = {r.path.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r.path}
    assert fetched == {"README.md"}


def test_repair_from_a_peer_node(
    hubd: Hubd,
    hub: FakeHub,
    home: Path,
    mirrored: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    peer = node(settings, tmp_path, "peer-node", hub.endpoint)
    try:
        asyncio.run(mirror(peer, RepoRef.parse(MODEL)))
        blob = blob_path(home, hubd, SHARD)
        flip_byte(blob)
        with serving(peer) as url:
            assert hubd("peers", "add", "lab-a", url).code == 0
            hub.stop()  # only the peer can serve it now
            result = hubd("verify", "--repair", "--json")
    finally:
        peer.close()
    (repair,) = result.json()["repairs"]
    assert repair["repaired"] is True and repair["source"] == url
    assert blob.read_bytes() == ORIGINAL[SHARD]
    assert hubd("verify").code == 0
