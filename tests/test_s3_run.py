"""`hubd run` on a node whose blobs live in S3: the GGUF files come through the local cache."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from support.fakehub import FakeHub
from support.modelgen import tiny_llama_gguf, tiny_lora_gguf
from test_runtime import BASE, LORA, PROMPT, gguf_hub
from test_s3 import bucket, credentials, endpoint

from hubd.errors import HashMismatch
from hubd.store.cache import BlobCache

__all__ = ["bucket", "credentials", "endpoint", "gguf_hub"]  # fixtures, used by name

Hubd = Callable[..., Result]


def test_run_a_gguf_from_the_bucket_on_a_node_that_never_mirrored_it(
    hubd: Hubd,
    gguf_hub: FakeHub,
    endpoint: str,
    bucket: str,
    credentials: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "HUBD_STORE_BACKEND": "s3",
        "HUBD_S3_ENDPOINT": endpoint,
        "HUBD_S3_BUCKET": bucket,
        "HUBD_S3_CREDENTIALS_FILE": str(credentials),
        "HUBD_HOME": str(tmp_path / "a"),
        "HUBD_CATALOG_URL": f"sqlite:///{tmp_path / 'shared.db'}",
    }.items():
        monkeypatch.setenv(key, value)
    for repo in (BASE, LORA):
        assert hubd("mirror", repo, "-q").code == 0
    cache = tmp_path / "b-cache"
    monkeypatch.setenv("HUBD_HOME", str(tmp_path / "b"))  # another node: nothing local yet
    monkeypatch.setenv("HUBD_NODE_NAME", "b")
    monkeypatch.setenv("HUBD_CACHE", str(cache))
    monkeypatch.setenv("HUBD_CACHE_MAX_SIZE", "1")  # what is in use stays all the same
    args = ("run", BASE, "--lora", str(LORA), "-p", PROMPT, "--max-tokens", "4", "--json")
    first = hubd(*args).json()
    assert first["completion_tokens"] == 4 and first["lora_repo"] == LORA
    assert first["full_hash_checks"] == 2
    copies = {p.name: p for p in (cache / "blobs" / "sha256").glob("*/*")}
    wanted = {hashlib.sha256(d).hexdigest() for d in (tiny_lora_gguf(), tiny_llama_gguf(seed=0))}
    assert set(copies) == wanted  # verified copies of the model and the LoRA, read-only
    assert all(not p.stat().st_mode & stat.S_IWUSR for p in copies.values())
    again = hubd(*args).json()
    assert again["completion_tokens"] == 4


def test_the_cache_evicts_least_recently_used_copies_not_in_use(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, max_size=2500)
    blobs = [bytes([n]) * 1000 for n in range(3)]
    digests = [hashlib.sha256(b).hexdigest() for b in blobs]
    for digest, data in zip(digests, blobs, strict=True):
        cache.fill(digest, len(data), [data])
    now = time.time()
    for age, digest in zip((3000, 2000, 0), digests, strict=True):  # the first is the oldest
        os.utime(cache.path(digest), (now - age, now - age))
    assert cache.evict() == 1000
    assert [cache.get(d) is not None for d in digests] == [False, True, True]
    with pytest.raises(HashMismatch):
        cache.fill("ab" * 32, 3, [b"abc"])
    assert cache.get("ab" * 32) is None and not list(cache.blobs_dir.glob("ab/*"))
