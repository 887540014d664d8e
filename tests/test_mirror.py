"""hubd.ops.mirror against the loopback Hub: the real HfApi client and hubd's aiohttp transfer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import GATED, LORA, MODEL
from support.fakehub import FakeHub
from support.modelgen import tiny_lora_gguf, tiny_model_files

from hubd.catalog.revisions import get_repo
from hubd.cli.progress import BarProgress
from hubd.context import Context
from hubd.errors import (
    EntryNotFound,
    GatedRepo,
    HashMismatch,
    OfflineError,
    RepoNotFound,
    RevisionNotFound,
    SizeMismatch,
    UnsafePath,
    UpstreamError,
)
from hubd.hashes import git_blob_sha1
from hubd.ops.mirror import MirrorResult, mirror
from hubd.refs import RepoRef

SHARD = "model-00001-of-00002.safetensors"


def run(ctx: Context, ref: str, **kwargs: object) -> MirrorResult:
    return asyncio.run(mirror(ctx, RepoRef.parse(ref), **kwargs))  # type: ignore[arg-type]


def file_gets(hub: FakeHub) -> list[str]:
    return [r.path for r in hub.requests if r.method == "GET" and "/api/" not in r.path]


def store_files(ctx: Context) -> list[Path]:
    return [p for p in ctx.settings.store_dir.rglob("*") if p.is_file()]


def test_mirror_records_everything(ctx: Context, hub: FakeHub) -> None:
    result = run(ctx, MODEL)
    files = tiny_model_files(seed=0)
    assert result.files == len(files)
    assert result.bytes_transferred == sum(len(b) for b in files.values())
    snapshot = Path(result.snapshot)
    for path, data in files.items():
        assert (snapshot / path).read_bytes() == data
    assert ctx.store.get_ref(MODEL, "main") == result.commit
    with ctx.catalog() as session:
        repo = get_repo(session, MODEL)
        (revision,) = repo.revisions
        assert revision.commit == result.commit and revision.state == "verified"
        by_path = {f.path: f for f in revision.files}
        assert (
            by_path[SHARD].lfs and by_path[SHARD].sha256 == hashlib.sha256(files[SHARD]).hexdigest()
        )
        assert not by_path["config.json"].lfs and by_path["config.json"].git_oid
        assert revision.card is not None and revision.card.license == "apache-2.0"
        assert revision.card.pipeline_tag == "text-generation"
        (hop,) = revision.provenance
        assert hop.source_url == f"{hub.endpoint}/{MODEL}" and hop.node == "test-node"
        assert hop.commit == result.commit and hop.client.startswith("hubd/")
    assert not list((ctx.settings.store_dir / "tmp").glob("*.partial"))


def test_remirror_moves_no_bytes(ctx: Context, hub: FakeHub) -> None:
    run(ctx, MODEL)
    before = len(file_gets(hub))
    again = run(ctx, MODEL)
    assert again.up_to_date and again.bytes_transferred == 0
    assert len(file_gets(hub)) == before


def test_a_held_revision_is_answered_without_fetching_or_recording_again(
    ctx: Context, hub: FakeHub
) -> None:
    """Up to date: no attestation asked, nothing re-signed; a blob gone is a real mirror."""
    first = run(ctx, MODEL)
    signatures = ctx.store.signature_dir(MODEL, first.commit)
    signed = {p: p.stat().st_mtime_ns for p in signatures.iterdir()}
    asked = len(hub.requests)
    again = run(ctx, MODEL)
    assert again.up_to_date and again.snapshot == first.snapshot
    # The model info alone: no file, no attestations; the signatures and chain as they were.
    info = f"/api/models/{MODEL}/revision/main?blobs=true"
    assert [r.path for r in hub.requests[asked:]] == [info]
    assert {p: p.stat().st_mtime_ns for p in signatures.iterdir()} == signed
    (Path(first.snapshot) / SHARD).resolve().unlink()
    mended = run(ctx, MODEL)
    assert not mended.up_to_date and mended.bytes_transferred == len(tiny_model_files()[SHARD])
    assert (Path(mended.snapshot) / SHARD).read_bytes() == tiny_model_files()[SHARD]


def test_blobs_are_shared_across_repos(ctx: Context, hub: FakeHub) -> None:
    hub.add_repo("other/copy", tiny_model_files(seed=0))
    run(ctx, MODEL)
    copy = run(ctx, "other/copy")
    assert copy.bytes_transferred == 0 and not copy.up_to_date
    blobs = list((ctx.settings.store_dir / "blobs" / "sha256").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == len(tiny_model_files(seed=0))


def test_include_exclude_keep_metadata(ctx: Context, hub: FakeHub) -> None:
    result = run(ctx, MODEL, include=["*.json"], exclude=["tokenizer*"])
    names = sorted(p.name for p in Path(result.snapshot).iterdir())
    assert "README.md" in names and "config.json" in names
    assert "tokenizer_config.json" not in names and SHARD not in names
    with pytest.raises(EntryNotFound, match="no file matches"):
        run(ctx, MODEL, include=["*.gguf"])


def test_revisions_by_tag_and_commit(ctx: Context, hub: FakeHub) -> None:
    old = run(ctx, f"{MODEL}@v1.0").commit
    new_commit = hub.add_repo(MODEL, tiny_model_files(seed=5))
    assert run(ctx, MODEL).commit == new_commit
    pinned = run(ctx, f"{MODEL}@{old}")
    assert pinned.commit == old and pinned.up_to_date
    assert ctx.store.get_ref(MODEL, "v1.0") == old
    assert ctx.store.get_ref(MODEL, "main") == new_commit


def test_adapter_with_base(ctx: Context, hub: FakeHub) -> None:
    result = run(ctx, LORA, with_base=True)
    assert result.is_adapter and result.base_model == MODEL
    assert result.base is not None and result.base.repo == MODEL
    with ctx.catalog() as session:
        assert get_repo(session, LORA).kind == "adapter"
        assert get_repo(session, MODEL).kind == "model"


def test_corrupted_byte_leaves_nothing(ctx: Context, hub: FakeHub) -> None:
    hub.corrupt.add(SHARD)
    with pytest.raises(HashMismatch) as err:
        run(ctx, MODEL)
    digest = hashlib.sha256(tiny_model_files(seed=0)[SHARD]).hexdigest()
    assert SHARD in str(err.value) and digest in str(err.value)
    assert not ctx.store.has_blob(digest)
    assert not (ctx.store.tmp_dir / f"{digest}.partial").exists()  # bad bytes are dropped
    assert not (ctx.settings.store_dir / "snapshots").exists()
    with ctx.catalog() as session, pytest.raises(Exception, match="not in the catalog"):
        get_repo(session, MODEL)


@pytest.mark.parametrize(
    "name",
    ["../escape.json", "a/../../escape.json", "/etc/evil.json", "dir\\evil.json", "nul\x00.json"],
)
def test_malicious_file_names_refused_before_writing(ctx: Context, hub: FakeHub, name: str) -> None:
    hub.add_repo("evil/repo", {"README.md": b"# hi\n", name: b"{}"})
    with pytest.raises(UnsafePath):
        run(ctx, "evil/repo")
    assert file_gets(hub) == []
    assert store_files(ctx) == []


def test_not_found_errors(ctx: Context, hub: FakeHub) -> None:
    with pytest.raises(RepoNotFound):
        run(ctx, "nobody/nothing")
    with pytest.raises(RevisionNotFound):
        run(ctx, f"{MODEL}@no-such-branch")


def test_unreachable_endpoint(ctx: Context) -> None:
    dead = replace(ctx, settings=ctx.settings.model_copy(update={"endpoint": "http://127.0.0.1:9"}))
    with pytest.raises(UpstreamError, match="cannot reach"):
        run(dead, MODEL)


def test_gated_repo_needs_a_token(ctx: Context, hub: FakeHub) -> None:
    with pytest.raises(GatedRepo) as err:
        run(ctx, GATED)
    assert "HF_TOKEN" in str(err.value)
    wrong = replace(ctx, settings=ctx.settings.model_copy(update={"token": "hf_wrong"}))
    with pytest.raises(GatedRepo):
        run(wrong, GATED)
    right = replace(ctx, settings=ctx.settings.model_copy(update={"token": "hf_valid_token"}))
    assert run(right, GATED).files > 0


def test_dropped_connection_resumes_with_range(ctx: Context, hub: FakeHub) -> None:
    data = tiny_model_files(seed=0)[SHARD]
    hub.drop_after[SHARD] = len(data) // 2
    single = replace(ctx, settings=ctx.settings.model_copy(update={"parts": 1}))
    result = run(single, MODEL)
    assert Path(result.snapshot, SHARD).read_bytes() == data
    ranges = [r.range for r in hub.requests if r.range]
    assert ranges and all(r.startswith("bytes=") and r != "bytes=0-" for r in ranges)
    assert result.bytes_transferred == sum(len(b) for b in tiny_model_files(seed=0).values())


def test_stalled_source_times_out(ctx: Context, hub: FakeHub) -> None:
    hub.stall.add("config.json")
    impatient = replace(
        ctx, settings=ctx.settings.model_copy(update={"timeout": 0.3, "retries": 1})
    )
    with pytest.raises(UpstreamError, match="stalled"):
        run(impatient, MODEL)


@pytest.mark.parametrize("declared", [5, 50])
def test_source_lying_about_size(ctx: Context, hub: FakeHub, declared: int) -> None:
    config = b'{"abc": 12345}'
    hub.add_repo("liar/repo", {"README.md": b"# x\n", "config.json": config})
    hub.declared_size["config.json"] = declared
    with pytest.raises(SizeMismatch, match=r"config\.json"):
        run(ctx, "liar/repo")
    assert not ctx.store.has_blob(hashlib.sha256(config).hexdigest())
    # The lying file's bytes are dropped; an honest file cut short keeps its bytes for resume.
    assert not (ctx.store.tmp_dir / f"git-{git_blob_sha1(config)}.partial").exists()


def test_offline_answers_from_the_catalog(ctx: Context, hub: FakeHub) -> None:
    offline = replace(ctx, settings=ctx.settings.model_copy(update={"offline": True}))
    with pytest.raises(OfflineError):
        run(offline, MODEL)
    online = run(ctx, MODEL)
    requests = len(hub.requests)
    answer = run(offline, MODEL)
    assert answer.up_to_date and answer.commit == online.commit
    assert len(hub.requests) == requests


def test_disk_full_is_a_store_error(
    tmp_path: Path, ctx: Context, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills mid-transfer (after the up-front free-space check, by another writer)."""
    import subprocess

    monkeypatch.setattr("hubd.ops.fetch.check_mirror_space", lambda *args: None)

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True
    ).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        hub.add_repo("big/repo", {"README.md": b"# big\n", "w.safetensors": bytes(300_000)})
        tight = Context.open(ctx.settings.model_copy(update={"store_dir": small / "store"}))
        from hubd.errors import StoreError

        with pytest.raises(StoreError, match="disk full"):
            run(tight, "big/repo")
        weights = hashlib.sha256(bytes(300_000)).hexdigest()
        assert not tight.store.has_blob(weights)
        assert not (small / "store" / "snapshots").exists()
        tight.close()
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_json_summary_fields(ctx: Context, hub: FakeHub) -> None:
    data = run(ctx, MODEL).model_dump(mode="json")
    assert json.loads(json.dumps(data))["repo"] == MODEL
    assert {"repo", "commit", "files", "bytes_transferred", "bytes_reused", "seconds"} <= set(data)


def test_failed_mirror_releases_every_lock(ctx: Context, hub: FakeHub) -> None:
    """Many files failing at once (a wrong token): a later mirror in-process must not hang."""
    files = {f"part-{i:02d}.json": b"{}" + bytes([i]) for i in range(24)}
    hub.add_repo("acme/many", {"README.md": b"# many\n", **files}, gated=True)
    wrong = replace(
        ctx, settings=ctx.settings.model_copy(update={"token": "hf_wrong", "concurrency": 16})
    )
    for _ in range(3):
        with pytest.raises(GatedRepo):
            run(wrong, "acme/many")
    right = replace(wrong, settings=wrong.settings.model_copy(update={"token": "hf_valid_token"}))
    assert run(right, "acme/many").files == 25


def test_gguf_adapter_is_recorded_as_adapter(ctx: Context, hub: FakeHub) -> None:
    card = b"---\nlicense: mit\nbase_model: acme/tiny-llama\n---\n# a GGUF LoRA\n"
    hub.add_repo("acme/lora-gguf", {"README.md": card, "adapter-f32.gguf": tiny_lora_gguf()})
    result = run(ctx, "acme/lora-gguf")
    assert result.is_adapter and result.base_model == MODEL
    with ctx.catalog() as session:
        assert get_repo(session, "acme/lora-gguf").kind == "adapter"


def test_progress_bars_draw_per_file_and_overall(
    ctx: Context, hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ctx, MODEL, progress=BarProgress())
    err = capsys.readouterr().err
    assert "7 file(s)" in err and SHARD[-40:] in err and "B/s" in err


def test_mirror_waits_while_gc_holds_the_store(ctx: Context, hub: FakeHub) -> None:
    done: list[MirrorResult] = []
    with ctx.store.guard(exclusive=True):
        worker = threading.Thread(target=lambda: done.append(run(ctx, MODEL)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not done
    worker.join(20)
    assert done and done[0].files == len(tiny_model_files(seed=0))
