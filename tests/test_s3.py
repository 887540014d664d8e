"""Blobs in S3-compatible object storage, against a real SeaweedFS (tests/s3.sh starts it).

Mirror from the loopback Hub into a bucket, download through the daemon with the unmodified
huggingface_hub client (streamed and redirected to a presigned URL), a tampered object found by
verify and repaired, a transfer interrupted mid-upload resumed, a corrupt upstream leaving no
object, gc of unreferenced objects and stale uploads, two nodes on one catalog and one bucket,
the object store down, bundles in and out of a bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import LORA, MODEL, Result, hubd_process
from huggingface_hub import hf_hub_download, snapshot_download
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import serving

from hubd.bundle.export import export_bundle
from hubd.bundle.importer import import_bundle
from hubd.catalog.revisions import get_repo
from hubd.config import Settings
from hubd.context import Context
from hubd.errors import HashMismatch, NotFound, StoreUnavailable
from hubd.ops import gc
from hubd.ops.mirror import mirror
from hubd.ops.repair import repair
from hubd.ops.verify import verify_store
from hubd.refs import RepoRef
from hubd.store import Expected
from hubd.store import s3 as s3store
from hubd.store.s3 import S3Store, make_client

S3_URL = os.environ.get("HUBD_TEST_S3_URL")
ACCESS = os.environ.get("HUBD_TEST_S3_ACCESS_KEY", "")
SECRET = os.environ.get("HUBD_TEST_S3_SECRET_KEY", "")
S3_SKIP = os.environ.get("HUBD_TEST_S3") == "skip"  # read now: tests run with HUBD_* cleared
FILES = tiny_model_files(seed=0)


@pytest.fixture
def endpoint() -> str:
    if S3_URL is None:
        if S3_SKIP:
            pytest.skip("HUBD_TEST_S3=skip")
        pytest.fail(
            "S3 tests need HUBD_TEST_S3_URL: run pytest through tests/s3.sh "
            "(`make test` does), or set HUBD_TEST_S3=skip to skip them"
        )
    return S3_URL


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "s3.env"
    path.write_text(f"AWS_ACCESS_KEY_ID={ACCESS}\nAWS_SECRET_ACCESS_KEY='{SECRET}'\n")
    return path


@pytest.fixture
def bucket(endpoint: str, credentials: Path) -> Iterator[str]:
    """A new bucket for this test, emptied and removed afterwards."""
    client = make_client(endpoint, "us-east-1", credentials)
    name = f"hubd-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=entry["Key"])
    client.delete_bucket(Bucket=name)


def on_s3(
    settings: Settings, endpoint: str, bucket: str, credentials: Path, **more: Any
) -> Settings:
    return settings.model_copy(
        update={
            "store_backend": "s3",
            "s3_endpoint": endpoint,
            "s3_bucket": bucket,
            "s3_prefix": "prod/",
            "s3_credentials_file": credentials,
            **more,
        }
    )


@pytest.fixture
def s3ctx(settings: Settings, endpoint: str, bucket: str, credentials: Path) -> Iterator[Context]:
    with Context.open(on_s3(settings, endpoint, bucket, credentials)) as ctx:
        yield ctx


def keys(ctx: Context, under: str = "") -> list[str]:
    store = ctx.store
    assert isinstance(store, S3Store)
    return sorted(e["Key"] for e in store.list_objects(f"{store.prefix}{under}"))


def mirrored(ctx: Context) -> None:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))


def get(url: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """The answer, its body read (``.body``), redirects not followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    return response


def served_bytes(url: str) -> int:
    metrics = get(url, "/metrics").body.decode()  # type: ignore[attr-defined]
    return int(
        next(line for line in metrics.splitlines() if line.startswith("hubd_bytes_served")).split()[
            1
        ]
    )


def test_mirror_into_s3_and_download_with_the_hf_client(s3ctx: Context, tmp_path: Path) -> None:
    mirrored(s3ctx)
    blobs = keys(s3ctx, "blobs/")
    digests = {hashlib.sha256(data).hexdigest() for data in FILES.values()}
    assert blobs == sorted(f"prod/blobs/sha256/{d[:2]}/{d}" for d in digests)
    assert keys(s3ctx, "tmp/") == []  # staged parts are gone once the objects are complete
    assert not list(s3ctx.store.blobs_dir.glob("*/*"))  # nothing copied to the local cache
    with serving(s3ctx) as url:
        path = Path(snapshot_download(MODEL, endpoint=url, cache_dir=tmp_path / "hf"))
        for name, data in FILES.items():
            assert (path / name).read_bytes() == data
        ranged = get(url, f"/{MODEL}/resolve/main/config.json", {"Range": "bytes=2-5"})
        assert ranged.status == 206 and ranged.body == FILES["config.json"][2:6]  # type: ignore[attr-defined]
        assert served_bytes(url) == sum(len(d) for d in FILES.values()) + 4
        assert ranged.headers["Content-Range"].endswith(f"/{len(FILES['config.json'])}")
    assert verify_store(s3ctx).ok


def test_redirect_to_a_presigned_url(
    settings: Settings, endpoint: str, bucket: str, credentials: Path, tmp_path: Path
) -> None:
    with Context.open(on_s3(settings, endpoint, bucket, credentials, s3_redirect=True)) as ctx:
        mirrored(ctx)
        with serving(ctx) as url:
            answer = get(url, f"/{MODEL}/resolve/main/model-00001-of-00002.safetensors")
            assert answer.status == 302
            location = answer.headers["Location"]
            assert location.startswith(f"{endpoint}/{bucket}/prod/blobs/sha256/")
            assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
            assert answer.headers["X-Repo-Commit"] and answer.headers["X-Linked-Size"]
            path = Path(snapshot_download(MODEL, endpoint=url, cache_dir=tmp_path / "hf"))
            for name, data in FILES.items():
                assert (path / name).read_bytes() == data
            assert served_bytes(url) == 0  # every byte came from the bucket


def test_tampered_object_is_reported_and_repaired(s3ctx: Context) -> None:
    mirrored(s3ctx)
    store = s3ctx.store
    assert isinstance(store, S3Store)
    digest = hashlib.sha256(FILES["model-00001-of-00002.safetensors"]).hexdigest()
    forged = b"X" + FILES["model-00001-of-00002.safetensors"][1:]
    store.client.put_object(Bucket=store.bucket, Key=store.blob_key(digest), Body=forged)
    report = verify_store(s3ctx)
    assert [(d.path, d.actual) for d in report.damaged] == [
        ("model-00001-of-00002.safetensors", hashlib.sha256(forged).hexdigest())
    ]
    repairs = asyncio.run(repair(s3ctx, report.damaged))
    assert [r.repaired for r in repairs] == [True]
    assert store.digest_of(digest) == digest
    assert verify_store(s3ctx).ok


def test_interrupted_upload_resumes_from_the_staged_parts(s3ctx: Context) -> None:
    store = s3ctx.store
    assert isinstance(store, S3Store)
    data = os.urandom(40 * 1024 * 1024)  # three parts of 16 MiB
    digest = hashlib.sha256(data).hexdigest()
    expected = Expected("big.bin", len(data), digest)
    with store.writer(expected) as writer:  # the process dies after 20 MiB: no commit
        writer.write(data[: 20 * 1024 * 1024])
    assert len(keys(s3ctx, "tmp/")) == 1 and keys(s3ctx, "blobs/") == []
    with store.writer(expected) as writer:
        assert writer.offset == 16 * 1024 * 1024  # the whole part, hashed again as read back
        writer.write(data[writer.offset :])
        assert writer.commit() == digest
    assert keys(s3ctx, "tmp/") == []
    assert store.digest_of(digest) == digest and store.has_blob(digest, len(data))


def staged(client: Any, bucket: str, part: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix="tmp/").get("Contents", [])
    return [e["Key"] for e in listed if part in e["Key"]]


def test_kill_9_mid_upload_then_resume(
    hubd: Callable[..., Result],
    endpoint: str,
    bucket: str,
    credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights = os.urandom(40 * 1024 * 1024)
    fake = FakeHub()
    fake.add_repo("acme/big", {"README.md": b"# big\n", "model.safetensors": weights})
    fake.throttle = 8 * 1024 * 1024
    client = make_client(endpoint, "us-east-1", credentials)
    with fake:
        for key, value in {
            "HF_ENDPOINT": fake.endpoint,
            "HUBD_STORE_BACKEND": "s3",
            "HUBD_S3_ENDPOINT": endpoint,
            "HUBD_S3_BUCKET": bucket,
            "HUBD_S3_CREDENTIALS_FILE": str(credentials),
            "HUBD_PART_SIZE": str(64 * 1024 * 1024),  # one stream: the resume shows in Range
        }.items():
            monkeypatch.setenv(key, value)
        proc = hubd_process("mirror", "acme/big", "--quiet")
        deadline = time.monotonic() + 30
        digest = hashlib.sha256(weights).hexdigest()
        while not staged(client, bucket, f"/{digest}/"):  # the first 16 MiB part of the weights
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.kill()
        proc.wait(timeout=10)
        key = f"blobs/sha256/{digest[:2]}/{digest}"
        assert not client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount")
        fake.throttle = None
        fake.requests.clear()
        result = hubd("mirror", "acme/big", "--json", "--quiet")
        summary = json.loads(result.out) if result.code == 0 else result.err
        assert summary["bytes_transferred"] <= len(weights) - 16 * 1024 * 1024 + 100
        first = next(r.range for r in fake.requests if r.range and "/cdn/" in r.path)
        assert first == f"bytes={16 * 1024 * 1024}-"
    assert not client.list_objects_v2(Bucket=bucket, Prefix="tmp/").get("KeyCount")
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == digest
    assert hubd("verify").code == 0


def test_corrupt_upstream_bytes_leave_no_object(s3ctx: Context) -> None:
    store = s3ctx.store
    data = os.urandom(20 * 1024 * 1024)
    claimed = hashlib.sha256(b"something else").hexdigest()
    with store.writer(Expected("lie.bin", len(data), claimed)) as writer:
        writer.write(data)
        with pytest.raises(HashMismatch):
            writer.commit()
    assert keys(s3ctx) == []


def test_gc_deletes_unreferenced_objects_and_stale_uploads(
    s3ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirrored(s3ctx)
    store = s3ctx.store
    assert isinstance(store, S3Store)
    orphan = b"not referenced by any revision"
    digest = hashlib.sha256(orphan).hexdigest()
    with store.writer(Expected("orphan", len(orphan), digest)) as writer:
        writer.write(orphan)
        writer.commit()
    with store.writer(Expected("staged", 32 * 1024 * 1024, "ab" * 32)) as writer:
        writer.write(b"\0" * 16 * 1024 * 1024)  # one staged part, then a crash
    store.client.create_multipart_upload(Bucket=store.bucket, Key=store.blob_key("cd" * 32))
    referenced = keys(s3ctx, "blobs/")
    gc.collect(s3ctx)  # within the grace period: another node may be about to record them
    assert len(keys(s3ctx, "tmp/")) == 1 and store.stale_uploads(float("inf"))
    assert store.blob_key(digest) in keys(s3ctx, "blobs/")
    gc.collect(s3ctx, partials=True)  # this node's staged parts: none is in progress
    assert keys(s3ctx, "tmp/") == [] and store.stale_uploads(float("inf"))
    monkeypatch.setattr(s3store, "UPLOAD_GRACE", 0.0)
    gc.collect(s3ctx)
    assert store.stale_uploads(float("inf")) == []
    assert keys(s3ctx, "blobs/") == [k for k in referenced if not k.endswith(digest)]
    assert verify_store(s3ctx).ok


def test_two_nodes_on_one_catalog_serve_each_others_blobs(
    settings: Settings, endpoint: str, bucket: str, credentials: Path, tmp_path: Path
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"

    def node(name: str, **more: Any) -> Context:
        home = tmp_path / name
        update = {"home": home, "store_dir": home / "store", "cache_path": home / "store"}
        return Context.open(
            on_s3(settings, endpoint, bucket, credentials, **update, **more).model_copy(
                update={"catalog_url": shared, "node_name": name}
            )
        )

    with node("a") as a, node("b") as b:
        mirrored(a)
        with serving(b) as url:  # b never mirrored: the bucket has the blobs
            got = hf_hub_download(
                MODEL, "model-00001-of-00002.safetensors", endpoint=url, cache_dir=tmp_path
            )
            assert Path(got).read_bytes() == FILES["model-00001-of-00002.safetensors"]
        assert verify_store(b).ok
    with node("c", s3_endpoint="http://127.0.0.1:9") as down, serving(down) as url:
        answer = get(url, f"/{MODEL}/resolve/main/model-00001-of-00002.safetensors")
        assert answer.status == 503 and answer.headers["X-Error-Code"] == "StoreUnavailable"


def test_bundles_export_from_and_import_into_a_bucket(
    s3ctx: Context,
    settings: Settings,
    endpoint: str,
    bucket: str,
    credentials: Path,
    tmp_path: Path,
    hub: FakeHub,
) -> None:
    mirrored(s3ctx)
    tar = tmp_path / "b.tar"
    exported = export_bundle(s3ctx, [RepoRef.parse(MODEL)], tar)
    assert exported.bytes == sum(len(d) for d in FILES.values())
    home = tmp_path / "far"
    far = settings.model_copy(
        update={
            "home": home,
            "store_dir": home / "store",
            "cache_path": home / "store",
            "catalog_url": f"sqlite:///{home / 'catalog.db'}",
            "node_name": "far",
        }
    )
    with Context.open(on_s3(far, endpoint, bucket, credentials, s3_prefix="far/")) as far_ctx:
        import_bundle(far_ctx, tar)
        assert len(keys(far_ctx, "blobs/")) == len(keys(s3ctx, "blobs/"))
        assert keys(far_ctx, "tmp/") == [] and verify_store(far_ctx).ok


class Outage:
    """A TCP forwarder to the object store on a fixed loopback port that can be cut and restored."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # as a stopped server: the connection is refused
                continue
            upstream = socket.create_connection(self.target, timeout=30)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                sock.close()

    def cut(self) -> None:
        self.up.clear()
        for sock in self.open:
            sock.close()
        self.open.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_object_store_down_is_a_503_and_nothing_is_lost(
    s3ctx: Context, settings: Settings, endpoint: str, bucket: str, credentials: Path
) -> None:
    mirrored(s3ctx)
    outage = Outage(endpoint)
    path = f"/{MODEL}/resolve/main/config.json"
    try:
        with Context.open(on_s3(settings, outage.url, bucket, credentials)) as ctx:
            with serving(ctx) as url:
                assert get(url, path).status == 200
                outage.cut()
                answer = get(url, path)
                assert answer.status == 503 and answer.headers["X-Error-Code"] == "StoreUnavailable"
                with pytest.raises(StoreUnavailable) as failed:
                    asyncio.run(mirror(ctx, RepoRef.parse(LORA)))
                assert failed.value.exit_code == 8
                with ctx.catalog() as session, pytest.raises(NotFound):
                    get_repo(session, LORA)
                outage.restore()
                assert get(url, path).body == FILES["config.json"]  # type: ignore[attr-defined]
                asyncio.run(mirror(ctx, RepoRef.parse(LORA)))
            assert verify_store(ctx).ok
    finally:
        outage.close()


def test_pull_through_into_a_bucket(
    settings: Settings, endpoint: str, bucket: str, credentials: Path, tmp_path: Path
) -> None:
    """The proxy verifies on this disk, then the bucket's own writer uploads (hashing again):
    the revision is recorded, and a second node on the bucket has every blob."""
    with (
        Context.open(on_s3(settings, endpoint, bucket, credentials, proxy_enabled=True)) as ctx,
        serving(ctx) as url,
    ):
        path = Path(snapshot_download(MODEL, endpoint=url, cache_dir=tmp_path / "c"))
        assert {p.name: p.read_bytes() for p in path.iterdir()} == FILES
        deadline = time.monotonic() + 30
        while True:
            with ctx.catalog() as session:
                states = [r.state for r in get_repo(session, MODEL).revisions]
            if states == ["verified"]:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        with ctx.catalog() as session:
            files = get_repo(session, MODEL).revisions[0].files
        store = ctx.store
        assert isinstance(store, S3Store)
        assert all(store.has_blob(f.sha256, f.size) for f in files)
        assert len(keys(ctx, "blobs/")) == len({f.sha256 for f in files})
