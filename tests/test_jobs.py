"""The job queue, the watch list and the daemon that runs them."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import LORA, MODEL, Result, hubd_process
from sqlalchemy import select
from support.fakehub import FakeHub
from support.modelgen import tiny_lora_files
from test_server import raw, serving

from hubd.catalog.models import Repo, utcnow
from hubd.cluster.jobs import claim, enqueue, get_job, requeue_interrupted, run_job
from hubd.cluster.tokens import create_token
from hubd.cluster.watch import add_watch, enqueue_due, parse_every
from hubd.context import Context
from hubd.errors import InvalidRequest
from hubd.ops.requests import MirrorRequest

Hubd = Callable[..., Result]


def test_enqueue_dedupes_and_validates(ctx: Context) -> None:
    first = enqueue(ctx, MirrorRequest(repo=MODEL))
    assert enqueue(ctx, MirrorRequest(repo=MODEL)).id == first.id
    assert enqueue(ctx, MirrorRequest(repo=MODEL, include=["*.json"])).id != first.id
    with pytest.raises(InvalidRequest):
        MirrorRequest.parse({"repo": MODEL, "rm_rf": True})


def test_a_posted_string_include_and_false_text_mirror_only_json_and_no_base(
    ctx: Context, hub: FakeHub
) -> None:
    """Regression: "*.json" was iterated as the patterns '*', '.', 'j'… (every file) and
    "false" was truthy (the base came too)."""
    hub.add_repo(
        "acme/lora-json", {**tiny_lora_files(base_model=MODEL), "trainer_state.json": b"{}"}
    )
    body = {"repo": "acme/lora-json", "include": "*.json", "with_base": "false"}
    with serving(ctx) as url:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        conn.request("POST", "/api/hubd/jobs", body=json.dumps(body).encode())
        answer = conn.getresponse()
        queued = json.loads(answer.read())
    assert answer.status == 202, queued
    assert queued["options"] == {
        "include": ["*.json"],
        "exclude": [],
        "with_base": False,
        "from": None,
    }
    job = claim(ctx, "n1")
    assert job is not None
    asyncio.run(run_job(ctx, job))
    done = get_job(ctx, job.id)
    assert done.state == "done", done.error
    snapshot = Path(done.result["snapshot"]) if done.result else None
    assert snapshot is not None
    taken = sorted(p.name for p in snapshot.iterdir())
    # The JSON files, and the card (always taken); no weights.
    assert taken == ["README.md", "adapter_config.json", "trainer_state.json"]
    assert done.result and done.result["base"] is None
    with ctx.catalog() as session:
        assert session.scalar(select(Repo).where(Repo.repo_id == MODEL)) is None


def test_no_job_is_claimed_twice(ctx: Context) -> None:
    ids = {enqueue(ctx, MirrorRequest(repo=f"acme/repo-{i}")).id for i in range(60)}
    claimed: list[int] = []

    def worker(name: str) -> None:
        while (job := claim(ctx, name)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_run_job_done_failed_and_requeued(ctx: Context, hub: FakeHub) -> None:
    enqueue(ctx, MirrorRequest(repo=MODEL))
    job = claim(ctx, "n1")
    assert job is not None
    asyncio.run(run_job(ctx, job))
    done = get_job(ctx, job.id)
    assert done.state == "done" and done.result and done.result["files"] > 0
    enqueue(ctx, MirrorRequest(repo="nobody/nothing"))
    failing = claim(ctx, "n1")
    assert failing is not None
    asyncio.run(run_job(ctx, failing))
    assert get_job(ctx, failing.id).state == "failed"
    enqueue(ctx, MirrorRequest(repo=LORA))
    assert claim(ctx, "n1") is not None
    assert requeue_interrupted(ctx, "n1") == 1 and claim(ctx, "n2") is not None


def test_watch_list_schedule(ctx: Context) -> None:
    assert parse_every("6h") == 6 * 3600 and parse_every("30m") == 1800
    for bad in ("5s", "6x", "", "400d"):
        with pytest.raises(InvalidRequest):
            parse_every(bad)
    add_watch(ctx, MODEL, 3600)
    (job_id,) = enqueue_due(ctx)
    assert get_job(ctx, job_id).repo == MODEL
    assert enqueue_due(ctx) == []
    assert len(enqueue_due(ctx, utcnow() + timedelta(hours=2))) == 1


def test_jobs_over_http_need_write_scope(ctx: Context) -> None:
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    _, reader = create_token(guarded, "read")
    _, writer = create_token(guarded, "write")
    body = json.dumps({"repo": MODEL}).encode()
    with serving(guarded) as url:

        def post(token: str, data: bytes) -> int:
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
            conn.request(
                "POST", "/api/hubd/jobs", body=data, headers={"Authorization": f"Bearer {token}"}
            )
            return conn.getresponse().status

        assert post(reader, body) == 403
        assert post(writer, body) == 202
        assert post(writer, b"{not json") == 400
        assert post(writer, json.dumps({"repo": "../etc"}).encode()) == 400
        status, jobs = raw(url, "/api/hubd/jobs", {"Authorization": f"Bearer {reader}"})
        assert status == 200 and json.loads(jobs)["jobs"][0]["repo"] == MODEL


@pytest.fixture
def daemon(
    home: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], tuple[subprocess.Popen[str], str]]]:
    """Start `hubd daemon` processes on this home (polling fast); all stopped at the end."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    procs: list[subprocess.Popen[str]] = []

    def start() -> tuple[subprocess.Popen[str], str]:
        url_file = home / f"url-{len(procs)}"
        proc = hubd_process(
            "daemon", "--port", "0", "--url-file", str(url_file), env={"HUBD_JOBS_POLL": "0.2"}
        )
        procs.append(proc)
        deadline = time.monotonic() + 20
        while not url_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        return proc, url_file.read_text()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=20)


def wait_job(
    hubd: Hubd, job_id: int, states: tuple[str, ...], seconds: float = 30
) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in json.loads(hubd("jobs", "--json").out)}
        if jobs.get(job_id, {}).get("state") in states:
            return jobs[job_id]  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {states}")


@pytest.mark.slow
def test_daemon_runs_jobs_and_watches(
    hubd: Hubd, daemon: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    _, url = daemon()
    job = json.loads(hubd("jobs", "add", MODEL, "--json").out)
    assert wait_job(hubd, job["id"], ("done", "failed"))["state"] == "done"
    assert hubd("watch", "add", LORA, "--every", "1h").code == 0
    deadline = time.monotonic() + 20
    while not any(
        j["repo"] == LORA and j["state"] == "done" for j in json.loads(hubd("jobs", "--json").out)
    ):
        assert time.monotonic() < deadline, hubd("jobs").out
        time.sleep(0.1)
    assert hubd("verify").code == 0
    status, body = raw(url, "/metrics")
    text = body.decode()
    assert status == 200 and 'hubd_jobs{state="done"} 2' in text
    assert "hubd_bytes_mirrored_total 0" not in text


@pytest.mark.slow
def test_daemon_restart_resumes_an_interrupted_job(
    hubd: Hubd, hub: FakeHub, home: Path, daemon: Callable[..., tuple[subprocess.Popen[str], str]]
) -> None:
    weights = os.urandom(3 << 20)
    hub.add_repo("acme/big", {"README.md": b"# big\n", "w.safetensors": weights})
    partial = home / "store" / "tmp" / f"{hashlib.sha256(weights).hexdigest()}.partial"
    hub.throttle = 1 << 20
    job = json.loads(hubd("jobs", "add", "acme/big", "--json").out)
    proc, _ = daemon()
    deadline = time.monotonic() + 20
    while not (partial.exists() and partial.stat().st_size > 0):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert wait_job(hubd, job["id"], ("running",))["node"] == "test-node"
    hub.throttle = None
    hub.requests.clear()
    daemon()
    done = wait_job(hubd, job["id"], ("done", "failed"))
    assert done["state"] == "done" and done["attempts"] == 2
    assert any(r.range and r.range != "bytes=0-" for r in hub.requests), hub.requests
    assert hubd("verify").code == 0


@pytest.mark.slow
def test_cli_hands_work_to_a_configured_daemon(
    hubd: Hubd,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    daemon: Callable[..., tuple[subprocess.Popen[str], str]],
) -> None:
    _, url = daemon()
    monkeypatch.setenv("HUBD_HOME", str(tmp_path / "laptop"))
    monkeypatch.setenv("HUBD_DAEMON_URL", url)
    result = hubd("mirror", MODEL, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["files"] > 0
    queued = json.loads(hubd("jobs", "add", LORA, "--json").out)
    assert queued["repo"] == LORA and queued["state"] in ("queued", "running", "done")
    failed = hubd("mirror", "nobody/nothing")
    assert failed.code == 1 and "failed: repository nobody/nothing not found" in failed.err
    assert hubd("mirror", MODEL, "--endpoint", "http://x").code == 2
    assert not (tmp_path / "laptop").exists()  # the laptop's home was never needed
    monkeypatch.setenv("HUBD_HOME", str(home))
    monkeypatch.delenv("HUBD_DAEMON_URL")
    assert MODEL in hubd("ls").out
