"""Visibility is tied to the catalog commit: kill -9, a full disk or any exception while a
revision is recorded leaves nothing visible once the next hubd process has opened the store.

The checker (tests/hostile.py ``check_store``) reads the store and the catalog without hubd's
code. Kill loops are bounded in count and time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, hubd_process
from hostile import HostileHub, check_store, honest
from sqlalchemy.exc import OperationalError

from hubd.ops import record as record_module

Hubd = Callable[..., Result]
MANY = 800


@pytest.fixture
def many(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileHub]:
    """A revision of MANY small files: linking and recording it takes a while to interrupt."""
    with HostileHub() as hub:
        files = {f"shard/{i:05d}.json": b'{"i": %d}\n' % i for i in range(MANY)}
        hub.scenarios["evil/many"] = honest({"README.md": b"# many\n", **files})
        monkeypatch.setenv("HUBD_ENDPOINT", hub.endpoint)
        yield hub


def _snapshot_links(home: Path) -> int:
    root = home / "store" / "snapshots"
    return sum(1 for p in root.rglob("*") if p.is_symlink()) if root.exists() else 0


def _kill_once_linking(
    proc: subprocess.Popen[str], home: Path, rng: random.Random, within: float
) -> bool:
    """kill -9 ``proc`` up to ``within`` s after its first snapshot link; whether it landed."""
    deadline = time.monotonic() + 60
    while _snapshot_links(home) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0, within))
    proc.kill()
    proc.wait(timeout=10)
    return proc.returncode == -9


@pytest.mark.slow
def test_kill_9_while_recording_leaves_nothing_visible(
    hubd: Hubd, many: HostileHub, home: Path
) -> None:
    """C04: killed while 800 links are written: the next process removes them."""
    assert hubd("mirror", "evil/many", "-q").code == 0  # the blobs are here; recording remains
    rng = random.Random(4)
    landed = 0
    for _ in range(4):
        assert hubd("rm", "evil/many").code in (0, 3)  # 3: the last kill left it unrecorded
        landed += _kill_once_linking(hubd_process("mirror", "evil/many", "-q"), home, rng, 0.15)
        assert hubd("ls").code == 0  # any process opening the store recovers first
        assert check_store(home) == []
    assert landed, "no kill landed while recording"
    assert hubd("mirror", "evil/many", "-q").code == 0
    assert check_store(home) == []
    assert _snapshot_links(home) == MANY + 1
    assert hubd("verify").code == 0


def test_exception_while_recording_is_undone(
    hubd: Hubd, many: HostileHub, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M58's case: anything raised after the links were made leaves none of them."""

    def fail(*args: Any, **kwargs: Any) -> None:
        raise ValueError("non-hexadecimal number found in fromhex() (injected)")

    monkeypatch.setattr(record_module, "sign_files", fail)
    with pytest.raises(ValueError, match="injected"):
        hubd("mirror", "evil/many", "-q")
    assert _snapshot_links(home) == 0
    assert not (home / "store" / "refs" / "evil" / "many").exists()
    assert not (home / "store" / "signatures" / "evil" / "many").exists()
    assert list((home / "store" / "tmp").glob("record-*")) == []
    assert check_store(home) == []


def test_full_disk_at_the_catalog_commit_is_a_store_error(
    hubd: Hubd, many: HostileHub, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C10: SQLite's "database or disk is full" at commit: exit 8, the links and ref undone."""
    real = record_module.extend_chain

    def full(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise OperationalError("COMMIT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(record_module, "extend_chain", full)
    result = hubd("mirror", "evil/many", "-q")
    assert result.code == 8, result.err
    assert "disk is full" in result.err and "Traceback" not in result.err
    assert _snapshot_links(home) == 0
    assert not (home / "store" / "refs" / "evil" / "many").exists()
    assert check_store(home) == []


def test_a_journal_left_by_a_dead_process_is_replayed(
    hubd: Hubd, many: HostileHub, home: Path
) -> None:
    """A journal no process holds names a revision the catalog lacks: its files go."""
    assert hubd("mirror", "evil/many", "-q").code == 0
    snapshot = next((home / "store" / "snapshots" / "evil" / "many").iterdir())
    commit = snapshot.name
    # What a process killed mid-recording of another revision leaves: links, a ref, a journal.
    ghost = "f" * 40
    (home / "store" / "snapshots" / "evil" / "many" / ghost).mkdir()
    (home / "store" / "snapshots" / "evil" / "many" / ghost / "README.md").symlink_to(
        (snapshot / "README.md").readlink()
    )
    (home / "store" / "refs" / "evil" / "many" / "dev").write_text(ghost)
    journal = {
        "revisions": [{"repo": "evil/many", "commit": ghost, "existed": False, "signatures": None}],
        "refs": [["evil/many", "dev"]],
        "fresh_dirs": [],
    }
    (home / "store" / "tmp" / "record-999999-0.json").write_text(json.dumps(journal))
    assert hubd("ls").code == 0
    assert not (home / "store" / "snapshots" / "evil" / "many" / ghost).exists()
    assert not (home / "store" / "refs" / "evil" / "many" / "dev").exists()
    assert (home / "store" / "snapshots" / "evil" / "many" / commit / "README.md").exists()
    assert list((home / "store" / "tmp").glob("record-*")) == []
    assert check_store(home) == []


def test_gc_removes_dead_imports_staging_and_orphan_locks(hubd: Hubd, home: Path) -> None:
    """C05, C13: staging of a dead import and lock files without a transfer are removed."""
    assert hubd("ls").code == 0
    tmp = home / "store" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    dead = tmp / "import-999999-abcd" / "blobs"
    dead.mkdir(parents=True)
    (dead / "x").write_bytes(b"y" * 1000)
    alive = tmp / f"import-{os.getpid()}-abcd"
    alive.mkdir()
    (tmp / f"{'a' * 64}.lock").write_bytes(b"")
    (tmp / f"{'b' * 64}.lock").write_bytes(b"")
    (tmp / f"{'b' * 64}.partial").write_bytes(b"resume me")
    result = hubd("gc", "--json")
    assert result.code == 0, result.err
    assert not (tmp / "import-999999-abcd").exists()
    assert alive.exists()
    assert not (tmp / f"{'a' * 64}.lock").exists()
    assert (tmp / f"{'b' * 64}.partial").exists()


def test_gc_reports_strays_instead_of_crashing(hubd: Hubd, many: HostileHub, home: Path) -> None:
    """C12: a link or file under blobs/sha256 that is not a blob is left alone and reported."""
    assert hubd("mirror", "evil/many", "-q").code == 0
    blobs = home / "store" / "blobs" / "sha256"
    (blobs / "README.md").symlink_to("../../../keys")
    (blobs / "00").mkdir(exist_ok=True)
    (blobs / "00" / "not-a-digest").write_text("x")
    result = hubd("gc", "--json")
    assert result.code == 0, result.err
    strays = result.json()["strays"]
    assert any(s.endswith("README.md") for s in strays)
    assert any(s.endswith("not-a-digest") for s in strays)
    assert hubd("verify").code == 0


def test_verify_finds_a_swapped_snapshot_link(hubd: Hubd, many: HostileHub, home: Path) -> None:
    """C14: the link points at another blob than the catalog names: verify says so, and
    --repair points it back."""
    assert hubd("mirror", "evil/many", "-q").code == 0
    snapshot = next((home / "store" / "snapshots" / "evil" / "many").iterdir())
    readme = snapshot / "README.md"
    other = (snapshot / "shard" / "00000.json").readlink()
    readme.unlink()
    readme.symlink_to(other.relative_to(".."))  # one level up: one ".." fewer
    result = hubd("verify")
    assert result.code == 1
    assert "MISLINKED" in result.out and "README.md" in result.out
    assert hubd("verify", "--repair").code == 0
    assert hubd("verify").code == 0
    assert check_store(home) == []


@pytest.mark.slow
def test_kill_9_while_importing_leaves_nothing_visible(
    hubd: Hubd, many: HostileHub, home: Path, tmp_path: Path
) -> None:
    """C05, C06: an import killed as its snapshot appears leaves no links once the store is
    opened again, and `hubd gc` removes the staging the killed processes left."""
    assert hubd("mirror", "evil/many", "-q").code == 0
    bundle = tmp_path / "many.tar"
    assert hubd("export", "evil/many", "-o", str(bundle)).code == 0
    far = tmp_path / "far"
    env = {"HUBD_HOME": str(far), "HUBD_NODE_NAME": "far-node"}
    rng = random.Random(6)
    for _ in range(3):
        _kill_once_linking(hubd_process("import", str(bundle), env=env), far, rng, 0.1)
        assert hubd("--home", str(far), "ls").code == 0
        assert check_store(far) == []
    assert hubd("--home", str(far), "gc").code == 0
    assert list((far / "store" / "tmp").glob("import-*")) == []
    assert hubd("--home", str(far), "import", str(bundle)).code == 0
    assert check_store(far) == []
    assert _snapshot_links(far) == MANY + 1
