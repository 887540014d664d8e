"""PostgreSQL as the catalog several nodes share: the CLI end to end, and processes racing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MODEL, Result, hubd_process
from sqlalchemy import select
from support.fakehub import FakeHub

from hubd.catalog.db import open_catalog
from hubd.catalog.models import Blob, Repo, Revision
from hubd.cluster.jobs import enqueue, list_jobs
from hubd.config import load_settings
from hubd.context import Context
from hubd.ops.requests import MirrorRequest

Hubd = Callable[..., Result]

# Each process opens (so migrates) the catalog at the same instant, then records a revision at
# the same instant: four processes, two repos, one blob shared by all.
RACER = """
import sys, time
from datetime import UTC, datetime
from hubd.catalog.db import open_catalog
from hubd.catalog.revisions import CardRecord, FileRecord, RevisionRecord, record_revision

url, start, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
factory = open_catalog(url)
time.sleep(max(0.0, start + 1.5 - time.time()))
with factory.begin() as session:
    record_revision(session, RevisionRecord(
        repo_id=f"acme/m{n % 2}", commit=str(n) * 40, source_endpoint="http://hub", refs=["main"],
        files=[FileRecord("LICENSE", 10, "a" * 64, None, False)], card=CardRecord(),
        is_adapter=False, base_model=None, node=f"node-{n}", client="test",
        fetched_at=datetime.now(UTC),
    ))
"""


def test_nodes_starting_and_recording_together_serialise(catalog_url: str) -> None:
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, catalog_url, str(start), str(n)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(1, 5)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    factory = open_catalog(catalog_url)
    with factory() as s:
        assert sorted(s.scalars(select(Repo.repo_id))) == ["acme/m0", "acme/m1"]
        assert len(list(s.scalars(select(Revision.commit)))) == 4
        assert list(s.scalars(select(Blob.sha256))) == ["a" * 64]
    factory.kw["bind"].dispose()


def test_mirror_ls_verify_with_a_postgresql_catalog(
    hubd: Hubd, hub: FakeHub, home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HUBD_CATALOG_URL", pg_url)
    mirrored = hubd("mirror", MODEL, "--json")
    assert mirrored.code == 0, mirrored.err
    commit = json.loads(mirrored.out)["commit"]
    rows = hubd("ls", "--json").json()["repos"]
    assert [(r["repo"], r["refs"]) for r in rows] == [(MODEL, {"main": commit})]
    detail = json.loads(hubd("show", MODEL, "--json").out)
    assert detail["revisions"][0]["provenance"][0]["node"] == "test-node"
    verified = hubd("verify")
    assert verified.code == 0 and "all ok" in verified.out
    assert not (home / "catalog.db").exists()  # everything went to PostgreSQL
    assert os.environ["HUBD_CATALOG_URL"] == pg_url


@pytest.mark.slow
def test_two_daemons_on_one_catalog_never_run_a_job_twice(
    hub: FakeHub, tmp_path: Path, pg_url: str
) -> None:
    repos = [f"acme/small-{i:02d}" for i in range(30)]
    for repo in repos:
        hub.add_repo(repo, {"README.md": f"# {repo}\n".encode(), "config.json": b"{}"})
    daemons = []
    try:
        for name in ("node-a", "node-b"):
            env = {
                "HUBD_HOME": str(tmp_path / name),
                "HUBD_NODE_NAME": name,
                "HUBD_CATALOG_URL": pg_url,
                "HF_ENDPOINT": hub.endpoint,
                "HUBD_JOBS": "2",
                "HUBD_JOBS_POLL": "0.1",
            }
            url_file = tmp_path / f"{name}.url"
            daemons.append(
                hubd_process("daemon", "--port", "0", "--url-file", str(url_file), env=env)
            )
            deadline = time.monotonic() + 30
            while not url_file.exists():
                assert daemons[-1].poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        ctx = Context.open(load_settings(home=tmp_path / "queue", catalog_url=pg_url))
        ids = {enqueue(ctx, MirrorRequest(repo=repo)).id for repo in repos}
        deadline = time.monotonic() + 90
        while True:
            jobs = [j for j in list_jobs(ctx, limit=100) if j.id in ids]
            if all(j.state in ("done", "failed") for j in jobs):
                break
            assert time.monotonic() < deadline, [(j.id, j.state) for j in jobs]
            time.sleep(0.2)
        ctx.close()
    finally:
        for proc in daemons:
            proc.terminate()
            proc.communicate(timeout=30)
    assert [j.state for j in jobs] == ["done"] * len(repos), [j.error for j in jobs]
    assert all(j.attempts == 1 for j in jobs)
    assert {j.node for j in jobs} == {"node-a", "node-b"}
