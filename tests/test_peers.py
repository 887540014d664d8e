"""Peers: tried in order before the Hub, per-file fallback, tokens kept out of the catalog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import LORA, MODEL, Result
from sqlalchemy import select
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import node

from hubd.catalog.models import File
from hubd.context import Context
from hubd.errors import HashMismatch
from hubd.ops.mirror import MirrorResult, mirror
from hubd.refs import RepoRef
from hubd.sources.registry import add_peer

Hubd = Callable[..., Result]
SHARD = "model-00001-of-00002.safetensors"


@pytest.fixture
def peer() -> Iterator[FakeHub]:
    """A second endpoint holding the same model (same content, so the same commit)."""
    fake = FakeHub()
    fake.add_repo(MODEL, tiny_model_files(seed=0), tags=["v1.0"])
    with fake:
        yield fake


def run(ctx: Context, ref: str, **kwargs: object) -> MirrorResult:
    return asyncio.run(mirror(ctx, RepoRef.parse(ref), **kwargs))  # type: ignore[arg-type]


def served_by(ctx: Context) -> dict[str, str | None]:
    with ctx.catalog() as session:
        return {f.path: f.source for f in session.scalars(select(File))}


def test_peers_are_tried_before_the_hub(ctx: Context, hub: FakeHub, peer: FakeHub) -> None:
    add_peer(ctx, "lab-a", peer.endpoint)
    result = run(ctx, MODEL)
    assert result.source == peer.endpoint
    assert set(served_by(ctx).values()) == {peer.endpoint}
    assert not [r for r in hub.requests if "/resolve/" in r.path]


def test_repo_missing_on_peer_comes_from_the_hub(ctx: Context, hub: FakeHub, peer: FakeHub) -> None:
    add_peer(ctx, "lab-a", peer.endpoint)
    assert run(ctx, LORA).source == hub.endpoint


def test_corrupt_file_from_peer_is_fetched_from_the_next_source(
    ctx: Context, hub: FakeHub, peer: FakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    add_peer(ctx, "lab-a", peer.endpoint)
    peer.corrupt.add(SHARD)
    result = run(ctx, MODEL)
    assert result.source == peer.endpoint
    sources = served_by(ctx)
    assert sources[SHARD] == hub.endpoint and sources["config.json"] == peer.endpoint
    assert "sha256 mismatch" in caplog.text and hub.endpoint in caplog.text
    assert (Path(result.snapshot) / SHARD).read_bytes() == tiny_model_files(seed=0)[SHARD]


def test_stalled_peer_falls_back(ctx: Context, hub: FakeHub, peer: FakeHub) -> None:
    impatient = replace(
        ctx, settings=ctx.settings.model_copy(update={"timeout": 0.3, "retries": 0})
    )
    add_peer(impatient, "lab-a", peer.endpoint)
    peer.stall.add("config.json")
    run(impatient, MODEL)
    assert served_by(impatient)["config.json"] == hub.endpoint


def test_from_limits_to_one_source(
    ctx: Context, hub: FakeHub, peer: FakeHub, tmp_path: Path
) -> None:
    add_peer(ctx, "lab-a", peer.endpoint)
    assert run(ctx, MODEL, from_=hub.endpoint).source == hub.endpoint
    fresh = node(ctx.settings, tmp_path, "fresh", hub.endpoint)
    add_peer(fresh, "lab-a", peer.endpoint)
    peer.corrupt.add(SHARD)
    with pytest.raises(HashMismatch):
        run(fresh, MODEL, from_="lab-a")  # no fallback outside --from


def test_peers_cli(hubd: Hubd, home: Path, tmp_path: Path, peer: FakeHub) -> None:
    token = tmp_path / "lab-a.token"
    token.write_text("hf_peer_secret_token\n")
    added = hubd("peers", "add", "lab-a", peer.endpoint, "--token-file", str(token))
    assert added.code == 0, added.err
    assert hubd("peers", "add", "lab-b", "http://127.0.0.1:9", "--token-env", "LAB_B").code == 0
    rows = json.loads(hubd("peers", "ls", "--json").out)
    assert [(r["name"], r["position"]) for r in rows] == [("lab-a", 1), ("lab-b", 2)]
    assert b"hf_peer_secret_token" not in (home / "catalog.db").read_bytes()
    for args, code, message in [
        (["peers", "add", "lab-a", peer.endpoint], 2, "exists"),
        (["peers", "add", "x", "ftp://host"], 2, "not a peer URL"),
        (["peers", "rm", "nobody"], 3, "no peer named"),
        (["mirror", MODEL, "--from", "not-a-peer"], 2, "not a peer URL"),
        (["mirror", MODEL, "--from", "lab-b"], 2, "$LAB_B is not set"),
    ]:
        result = hubd(*args)
        assert result.code == code and message in result.err, (args, result.err)
    assert hubd("peers", "rm", "lab-b").code == 0
    mirrored = hubd("mirror", MODEL, "--from", "lab-a", "--json")
    assert mirrored.code == 0 and json.loads(mirrored.out)["source"] == peer.endpoint
    assert any(r.authorization for r in peer.requests)  # the token file's token was sent
