"""The unmodified huggingface_hub client must work against FakeHub exactly as against the Hub."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, ModelCard, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from safetensors import safe_open
from safetensors.numpy import load
from support.fakehub import FakeHub
from support.modelgen import (
    big_safetensors_repo,
    tiny_lora_files,
    tiny_model_files,
    write_files,
)

REPO = "org/tiny"
GATED = "org/gated"
LFS_THRESHOLD = 32 * 1024
BIG = "data/big.txt"  # LFS by size, served from disk (sendfile) by the CDN host
NOTES = "data/notes.txt"  # regular file served from disk by the API host


@dataclass
class Served:
    hub: FakeHub
    sha: str
    files: dict[str, bytes]

    def resolve_url(self, name: str, repo: str = REPO, rev: str = "main") -> str:
        return f"{self.hub.endpoint}/{repo}/resolve/{rev}/{name}"


@pytest.fixture(autouse=True)
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for key in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    files = tiny_model_files(seed=0)
    files["data/sub/deep.txt"] = b"deep\n"
    on_disk = {BIG: bytes(range(256)) * 160, NOTES: b"notes on disk\n" * 10}
    write_files(tmp_path / "disk", on_disk)
    hub = FakeHub(lfs_threshold=LFS_THRESHOLD, page_size=3)
    sha = hub.add_repo(
        REPO, {**files, **{name: tmp_path / "disk" / name for name in on_disk}}, tags=["v1.0"]
    )
    hub.add_repo(GATED, {"config.json": b"{}\n", "model.safetensors": b"weights" * 10}, gated=True)
    hub.tokens.add("hf_good")
    with hub:
        yield Served(hub, sha, {**files, **on_disk})


def api(served: Served, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=served.hub.endpoint, token=token)


def download(
    served: Served,
    name: str,
    cache: Path,
    *,
    repo_id: str = REPO,
    revision: str | None = None,
    token: str | bool = False,
) -> bytes:
    path = hf_hub_download(
        repo_id, name, revision=revision, endpoint=served.hub.endpoint, cache_dir=cache, token=token
    )
    return Path(path).read_bytes()


def fetch(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Plain GET (one redirect followed), bypassing any HTTP client cleverness."""
    for _ in range(2):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        try:
            body = response.read()
        finally:
            conn.close()
        if response.status != 302:
            break
        url = response.headers["Location"]
    return response.status, response.headers, body


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_lfs(name: str) -> bool:
    return name.endswith(".safetensors") or name == BIG


def test_model_info_reports_hub_metadata(served: Served) -> None:
    info = api(served).model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == served.sha
    assert info.gated is False and info.private is False
    assert info.card_data is not None and info.card_data.license == "apache-2.0"
    assert info.pipeline_tag == "text-generation" and info.library_name == "transformers"
    assert info.tags is not None and {"safetensors", "license:apache-2.0"} <= set(info.tags)
    assert info.siblings is not None
    assert {s.rfilename for s in info.siblings} == set(served.files)
    for sibling in info.siblings:
        data = served.files[sibling.rfilename]
        assert sibling.size == len(data)
        if is_lfs(sibling.rfilename):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = "version https://git-lfs.github.com/spec/v1\n"
            pointer += f"oid sha256:{sha256}\nsize {len(data)}\n"
            assert sibling.lfs is not None and sibling.lfs.sha256 == sha256
            assert sibling.lfs.size == len(data) and sibling.lfs.pointer_size == len(pointer)
            assert sibling.blob_id == git_blob_sha1(pointer.encode())
        else:
            assert sibling.lfs is None and sibling.blob_id == git_blob_sha1(data)
    # Same content, same commit: the sha is deterministic (and bytes vs Path does not matter).
    assert FakeHub().add_repo(REPO, served.files) == served.sha


def test_model_info_without_files_metadata_lists_names_only(served: Served) -> None:
    info = api(served).model_info(REPO)
    assert info.siblings is not None and all(s.size is None for s in info.siblings)


def test_list_repo_tree_recursive_follows_pagination(served: Served) -> None:
    entries = list(api(served).list_repo_tree(REPO, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    assert set(files) == set(served.files)
    assert {e.path for e in entries if isinstance(e, RepoFolder)} == {"data", "data/sub"}
    pages = [r for r in served.hub.requests if "/tree/" in r.path]
    assert len(pages) == -(-len(entries) // 3) and "cursor=" in pages[-1].path
    for path, entry in files.items():
        assert entry.size == len(served.files[path])
        assert (entry.lfs is not None) == is_lfs(path)
    assert files[BIG].lfs is not None
    assert files[BIG].lfs.sha256 == hashlib.sha256(served.files[BIG]).hexdigest()

    top = {e.path for e in api(served).list_repo_tree(REPO)}
    assert "data" in top and NOTES not in top
    assert {e.path for e in api(served).list_repo_tree(REPO, path_in_repo="data")} == {
        BIG,
        NOTES,
        "data/sub",
    }


def test_hf_hub_download_regular_and_redirected_lfs(served: Served, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("config.json", NOTES, "model-00001-of-00002.safetensors", BIG):
        assert download(served, name, cache) == served.files[name]
    cdn = [r for r in served.hub.requests if r.path.startswith("/cdn/")]
    assert len(cdn) == 2 and all(r.method == "GET" for r in cdn)
    # The cache names blobs by the ETag it read: sha256 for LFS files, git blob sha1 otherwise.
    blobs = {p.name for p in cache.rglob("blobs/*")}
    assert hashlib.sha256(served.files[BIG]).hexdigest() in blobs
    assert git_blob_sha1(served.files[NOTES]) in blobs


def test_snapshot_download_with_allow_patterns(served: Served, tmp_path: Path) -> None:
    patterns = ["*.json", "data/*"]
    root = snapshot_download(
        REPO,
        allow_patterns=patterns,
        endpoint=served.hub.endpoint,
        cache_dir=tmp_path / "cache",
        token=False,
    )
    got = {
        p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()
    }
    expected = {n: d for n, d in served.files.items() if any(fnmatch(n, p) for p in patterns)}
    assert got == expected and BIG in got


def test_revisions_tags_commits_and_branches(served: Served, tmp_path: Path) -> None:
    hub = served.hub
    second = hub.add_repo(REPO, {**served.files, "config.json": b'{"v": 2}\n'})
    feature = hub.add_repo(REPO, {"config.json": b'{"v": 3}\n'}, branch="feature/x")
    assert len({served.sha, second, feature}) == 3
    client = api(served)
    assert client.model_info(REPO).sha == second
    assert client.model_info(REPO, revision="v1.0").sha == served.sha
    assert client.model_info(REPO, revision=served.sha).sha == served.sha
    assert client.model_info(REPO, revision="feature/x").sha == feature
    cache = tmp_path / "cache"
    assert download(served, "config.json", cache) == b'{"v": 2}\n'
    assert download(served, "config.json", cache, revision="v1.0") == served.files["config.json"]
    assert (
        download(served, "config.json", cache, revision=served.sha) == served.files["config.json"]
    )
    assert download(served, "config.json", cache, revision="feature/x") == b'{"v": 3}\n'


@pytest.mark.parametrize(
    ("repo", "revision", "name", "error"),
    [
        ("org/missing", "main", "config.json", RepositoryNotFoundError),
        (REPO, "nope", "config.json", RevisionNotFoundError),
        (REPO, "main", "missing.json", RemoteEntryNotFoundError),
        (GATED, "main", "config.json", GatedRepoError),
    ],
)
def test_errors_map_to_hf_exceptions(
    served: Served, tmp_path: Path, repo: str, revision: str, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        download(served, name, tmp_path / "cache", repo_id=repo, revision=revision)
    assert raised.type is error
    assert isinstance(raised.value, EntryNotFoundError) == (error is RemoteEntryNotFoundError)
    if error in (RepositoryNotFoundError, RevisionNotFoundError):
        with pytest.raises(error) as raised:
            api(served).model_info(repo, revision=revision)
        assert raised.type is error


def test_gated_repo_needs_a_valid_token(served: Served, tmp_path: Path) -> None:
    assert api(served).model_info(GATED).gated == "auto"  # metadata stays public
    cache = tmp_path / "cache"
    with pytest.raises(GatedRepoError, match="restricted"):
        download(served, "model.safetensors", cache, repo_id=GATED, token="hf_bad")
    served.hub.requests.clear()
    data = download(served, "model.safetensors", cache, repo_id=GATED, token="hf_good")
    assert data == b"weights" * 10
    # Like with the real Hub, the token goes to the Hub but never to the CDN host.
    assert [(r.path.startswith("/cdn/"), r.authorization) for r in served.hub.requests] == [
        (False, True),
        (True, False),
    ]


@pytest.mark.parametrize("name", ["config.json", NOTES, "model.safetensors.index.json", BIG])
def test_range_requests(served: Served, name: str) -> None:
    data = served.files[name]
    status, headers, body = fetch(served.resolve_url(name), {"Range": "bytes=5-24"})
    assert (status, body) == (206, data[5:25])
    assert headers["Content-Range"] == f"bytes 5-24/{len(data)}"
    assert headers["Accept-Ranges"] == "bytes" and "Content-Encoding" not in headers
    expected_etag = hashlib.sha256(data).hexdigest() if is_lfs(name) else git_blob_sha1(data)
    assert headers["ETag"] == f'"{expected_etag}"'
    assert fetch(served.resolve_url(name), {"Range": "bytes=-7"})[2] == data[-7:]
    assert fetch(served.resolve_url(name), {"Range": f"bytes={len(data)}-"})[0] == 416


@pytest.mark.parametrize("name", ["config.json", BIG])
def test_corrupt_flips_exactly_one_byte(served: Served, name: str) -> None:
    data, middle = served.files[name], len(served.files[name]) // 2
    served.hub.corrupt.add(name)
    body = fetch(served.resolve_url(name))[2]
    assert len(body) == len(data)
    assert [i for i in range(len(data)) if body[i] != data[i]] == [middle]
    ranged = fetch(served.resolve_url(name), {"Range": f"bytes={middle - 3}-{middle + 3}"})[2]
    assert ranged == body[middle - 3 : middle + 4]


def test_drop_after_cuts_every_response_spanning_the_offset(served: Served) -> None:
    data, cut = served.files[BIG], 10_000
    served.hub.drop_after[BIG] = cut
    for start in (0, cut - 1):
        with pytest.raises(http.client.IncompleteRead) as raised:
            fetch(served.resolve_url(BIG), {"Range": f"bytes={start}-"})
        assert raised.value.partial == data[start:cut]
    # A client resuming from what it holds gets the rest.
    assert fetch(served.resolve_url(BIG), {"Range": f"bytes={cut}-"})[2] == data[cut:]


def test_throttle_and_stall(served: Served) -> None:
    data = served.files[BIG]
    served.hub.throttle = 100_000
    started = time.monotonic()
    assert fetch(served.resolve_url(BIG))[2] == data
    assert time.monotonic() - started >= 0.8 * len(data) / 100_000
    served.hub.throttle = None

    served.hub.stall.add("config.json")
    parts = urlsplit(served.resolve_url("config.json"))
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=0.3)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(TimeoutError):
        response.read()
    conn.close()


def test_requests_are_recorded(served: Served) -> None:
    api(served, token="hf_good").model_info(REPO)
    fetch(served.resolve_url("config.json"), {"Range": "bytes=0-1"})
    first, second = served.hub.requests
    assert (first.method, first.path, first.range, first.authorization) == (
        "GET",
        f"/api/models/{REPO}",
        None,
        True,
    )
    assert (second.path, second.range, second.authorization) == (
        f"/{REPO}/resolve/main/config.json",
        "bytes=0-1",
        False,
    )


def test_modelgen_is_deterministic_and_valid(tmp_path: Path) -> None:
    assert tiny_model_files(seed=3) == tiny_model_files(seed=3) != tiny_model_files(seed=4)
    files = tiny_model_files(shards=3)
    index = json.loads(files["model.safetensors.index.json"])
    tensors = {
        k: v for shard in set(index["weight_map"].values()) for k, v in load(files[shard]).items()
    }
    assert set(tensors) == set(index["weight_map"])
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
    assert json.loads(files["config.json"])["architectures"] == ["LlamaForCausalLM"]
    assert set(tiny_model_files(shards=1)) >= {"model.safetensors", "config.json", "README.md"}

    lora = tiny_lora_files(base_model=REPO)
    assert json.loads(lora["adapter_config.json"])["peft_type"] == "LORA"
    card = ModelCard(lora["README.md"].decode()).data
    assert (card.base_model, card.base_model_relation, card.library_name) == (
        REPO,
        "adapter",
        "peft",
    )

    repo = big_safetensors_repo(tmp_path / "big", total_bytes=100_001, shards=3, seed=1)
    shards = sorted(name for name in repo if name.endswith(".safetensors"))
    assert len(shards) == 3 and {"config.json", "README.md"} <= set(repo)
    total = 0
    for name in shards:
        header_len = int.from_bytes(repo[name].read_bytes()[:8], "little")
        assert header_len % 8 == 0
        with safe_open(str(repo[name]), "np") as f:
            total += sum(f.get_slice(k).get_shape()[0] for k in f.keys())  # noqa: SIM118
    assert total == 100_001


def test_cli_generate_and_serve(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cli = [sys.executable, "-m", "tests.support"]
    subprocess.run(
        [*cli, "generate", "tiny-model", str(tmp_path / "m"), "--seed", "5"], check=True, env=env
    )
    assert (tmp_path / "m" / "model.safetensors.index.json").exists()
    port_file = tmp_path / "endpoint"
    server = subprocess.Popen(
        [*cli, "serve", "--repo", f"{REPO}={tmp_path / 'm'}", "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        endpoint = port_file.read_text().strip()
        info = HfApi(endpoint=endpoint, token=False).model_info(REPO)
        assert info.sha == FakeHub().add_repo(REPO, tiny_model_files(seed=5))
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=10)
    assert server.returncode == 0 and out.strip() == endpoint
