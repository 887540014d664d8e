"""Real processes interrupted for real: kill -9, Ctrl-C, and two mirrors racing each other."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Result, hubd_process
from support.fakehub import FakeHub

pytestmark = pytest.mark.slow

REPO = "acme/big"
WEIGHTS = "model.safetensors"
SIZE = 4 * 1024 * 1024
Hubd = Callable[..., Result]


@pytest.fixture
def slow_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A hub serving one 4 MiB LFS file at 1 MiB/s, so there is time to interrupt it."""
    fake = FakeHub()
    fake.add_repo(
        REPO, {"README.md": b"---\nlicense: mit\n---\n# big\n", WEIGHTS: os.urandom(SIZE)}
    )
    fake.throttle = 1024 * 1024
    with fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


def wait_for_partial(home: Path, at_least: int, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # The weights' partial is named by its sha256; small files' (git-<oid>) come and go.
        for partial in (home / "store" / "tmp").glob("[0-9a-f]*.partial"):
            with contextlib.suppress(FileNotFoundError):
                if partial.stat().st_size >= at_least:
                    return partial
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the transfer never got going")


@pytest.mark.parametrize(
    "part_size", [str(32 * 1024 * 1024), str(512 * 1024)], ids=["single-stream", "ranged-parts"]
)
def test_kill_9_then_resume(hubd: Hubd, slow_hub: FakeHub, home: Path, part_size: str) -> None:
    # Two streams at most: the file's parts must not all be in flight at once, or it lands
    # whole between two looks at the partial and there is nothing to kill.
    env = {"HUBD_PART_SIZE": part_size, "HUBD_PARTS": "2"}
    proc = hubd_process("mirror", REPO, "--quiet", env=env)
    partial = wait_for_partial(home, 1024 * 1024, proc)
    proc.kill()
    proc.wait(timeout=10)
    kept = partial.stat().st_size
    assert 0 < kept < SIZE
    assert not list((home / "store" / "blobs").rglob("*.safetensors"))

    slow_hub.throttle = None
    slow_hub.requests.clear()
    result = hubd("mirror", REPO, "--json", "--quiet")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["bytes_transferred"] < SIZE + 100
    first = next(r.range for r in slow_hub.requests if r.range and "/cdn/" in r.path)
    assert first is not None and first.startswith(f"bytes={kept}-")
    assert not partial.exists()
    assert hubd("verify").code == 0


def test_ctrl_c_says_how_to_resume(hubd: Hubd, slow_hub: FakeHub, home: Path) -> None:
    proc = hubd_process("mirror", REPO)
    wait_for_partial(home, 512 * 1024, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "interrupted" in err and "again to resume" in err
    assert "Traceback" not in err
    slow_hub.throttle = None
    assert hubd("mirror", REPO, "-q").code == 0
    assert hubd("verify").code == 0


def test_two_concurrent_mirrors_end_in_one_copy(hubd: Hubd, slow_hub: FakeHub, home: Path) -> None:
    slow_hub.throttle = 4 * 1024 * 1024
    procs = [hubd_process("mirror", REPO, "--json") for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["commit"]
    blobs = [p for p in (home / "store" / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 2  # README.md and the weights, once each
    fetched = sum(json.loads(out)["bytes_transferred"] for out, _ in outputs)
    assert fetched < 2 * SIZE  # the second waited for the first instead of fetching again
    listing = json.loads(hubd("show", REPO, "--json").out)
    assert len(listing["revisions"]) == 1
    assert hubd("verify").code == 0
    assert not list((home / "store" / "tmp").glob("*.partial"))
