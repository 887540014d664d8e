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
from conftest import MODEL, Result
from sqlalchemy import select

from hubd.catalog.db import open_catalog
from hubd.catalog.models import Blob, Repo, Revision
from hubd.testing.fakehub import FakeHub

Hubd = Callable[..., Result]

# Each process opens (so migrates) the catalog at the same instant, then records a revision at
# the same instant: four processes, two repos, one blob shared by all.
RACER = """
import sys, time
from datetime import UTC, datetime
from hubd.catalog.db import open_catalog
from hubd.catalog.queries import CardRecord, FileRecord, RevisionRecord, record_revision

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


def test_nodes_starting_and_recording_together_serialise(pg_url: str) -> None:
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, pg_url, str(start), str(n)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(1, 5)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    factory = open_catalog(pg_url)
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
    rows = json.loads(hubd("ls", "--json").out)
    assert [(r["repo"], r["refs"]) for r in rows] == [(MODEL, {"main": commit})]
    detail = json.loads(hubd("show", MODEL, "--json").out)
    assert detail["revisions"][0]["provenance"][0]["node"] == "test-node"
    verified = hubd("verify")
    assert verified.code == 0 and "all ok" in verified.out
    assert not (home / "catalog.db").exists()  # everything went to PostgreSQL
    assert os.environ["HUBD_CATALOG_URL"] == pg_url
