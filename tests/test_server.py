"""hubd serving the Hugging Face API: unmodified clients, other hubd nodes, hostile URLs."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import MODEL, hubd_process
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from support.serving import serving

from hubd.catalog.revisions import get_repo
from hubd.config import Settings
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.server import hfapi


def node(settings: Settings, tmp_path: Path, name: str, endpoint: str) -> Context:
    home = tmp_path / name
    return Context.open(
        settings.model_copy(
            update={
                "home": home,
                "store_dir": home / "store",
                "catalog_url": f"sqlite:///{home / 'catalog.db'}",
                "node_name": name,
                "endpoint": endpoint,
            }
        )
    )


@pytest.fixture
def served(ctx: Context, hub: FakeHub) -> Iterator[str]:
    for ref in (f"{MODEL}@v1.0", MODEL):
        asyncio.run(mirror(ctx, RepoRef.parse(ref)))
    with serving(ctx) as url:
        yield url


def test_unmodified_hf_client_downloads_from_hubd(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    path = Path(snapshot_download(MODEL, endpoint=served, cache_dir=cache))
    for name, data in tiny_model_files(seed=0).items():
        assert (path / name).read_bytes() == data
    subset = Path(
        snapshot_download(
            MODEL, endpoint=served, cache_dir=tmp_path / "c2", allow_patterns=["*.json"]
        )
    )
    assert sorted(p.name for p in subset.iterdir() if p.suffix == ".safetensors") == []
    tagged = hf_hub_download(
        MODEL, "config.json", revision="v1.0", endpoint=served, cache_dir=cache
    )
    assert Path(tagged).read_bytes() == tiny_model_files(seed=0)["config.json"]
    offline = snapshot_download(MODEL, cache_dir=cache, local_files_only=True)
    assert Path(offline) == path
    info = HfApi(endpoint=served).model_info(MODEL, files_metadata=True)
    assert {s.rfilename for s in info.siblings or []} == set(tiny_model_files(seed=0))


def test_hf_client_errors(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/nothing", "config.json", endpoint=served, cache_dir=cache)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(MODEL, "config.json", revision="nope", endpoint=served, cache_dir=cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(MODEL, "missing.json", endpoint=served, cache_dir=cache)


def test_tree_is_paginated(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hfapi, "PAGE", 2)
    entries = list(HfApi(endpoint=served).list_repo_tree(MODEL, recursive=True))
    assert sorted(e.path for e in entries) == sorted(tiny_model_files(seed=0))


def raw(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.parametrize(
    "path",
    [
        f"/{MODEL}/resolve/main/..%2F..%2Fcatalog.db",
        f"/{MODEL}/resolve/main/%2e%2e/x",
        f"/{MODEL}/resolve/main/a%5Cb",
        f"/{MODEL}/resolve/main//etc/passwd",
        f"/{MODEL}/resolve/..%2F..%2F/config.json",
        "/acme/..%2F/resolve/main/x",
        f"/api/models/{MODEL}/tree/main?cursor=-1",
        f"/api/models/{MODEL}/tree/main?cursor=x",
        f"/api/models/{MODEL}?x=" + "a" * 5000,
        "/api/hubd/catalog?limit=abc",
        f"/{MODEL}/resolve/main/%00.json",
        "/api/models/a/b/c/d/e",
    ],
)
def test_hostile_urls_get_json_errors(served: str, path: str) -> None:
    status, body = raw(served, path)
    assert 400 <= status < 500
    assert "error" in json.loads(body) and b"Traceback" not in body


def test_range_requests(served: str) -> None:
    data = tiny_model_files(seed=0)["config.json"]
    status, body = raw(served, f"/{MODEL}/resolve/main/config.json", {"Range": "bytes=2-9"})
    assert status == 206 and body == data[2:10]


def test_chain_a_b_c_keeps_provenance(
    ctx: Context, hub: FakeHub, settings: Settings, tmp_path: Path
) -> None:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    with serving(ctx) as a_url:
        b = node(settings, tmp_path, "node-b", a_url)
        asyncio.run(mirror(b, RepoRef.parse(MODEL)))
        with serving(b) as b_url:
            c = node(settings, tmp_path, "node-c", b_url)
            result = asyncio.run(mirror(c, RepoRef.parse(MODEL)))
    assert result.bytes_transferred == sum(len(v) for v in tiny_model_files(seed=0).values())
    with c.catalog() as session:
        (revision,) = get_repo(session, MODEL).revisions
        chain = [(p.hop, p.node, p.source_url) for p in revision.provenance]
    assert chain == [
        (0, "test-node", f"{hub.endpoint}/{MODEL}"),
        (1, "node-b", f"{a_url}/{MODEL}"),
        (2, "node-c", f"{b_url}/{MODEL}"),
    ]


@pytest.mark.slow
def test_daemon_serves_and_stops_on_sigterm(ctx: Context, hub: FakeHub, home: Path) -> None:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    url_file = home / "url"
    proc = hubd_process("daemon", "--port", "0", "--url-file", str(url_file))
    deadline = time.monotonic() + 20
    while not url_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    status, body = raw(url_file.read_text(), "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _ = raw(url_file.read_text(), f"/{MODEL}/resolve/main/config.json")
    assert status == 200
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "stopped" in err
