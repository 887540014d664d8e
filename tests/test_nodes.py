"""Several real `hubd daemon` processes with separate homes, driven through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import MODEL, hubd_process
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files

pytestmark = pytest.mark.slow


class Node:
    """One hubd home: run its CLI, or its daemon."""

    def __init__(self, home: Path, name: str) -> None:
        self.home, self.name = home, name
        self.env = {"HUBD_HOME": str(home), "HUBD_NODE_NAME": name}
        self.daemon: subprocess.Popen[str] | None = None
        self.url = ""

    def cli(self, *args: str, check: bool = True) -> str:
        proc = hubd_process(*args, env=self.env)
        out, err = proc.communicate(timeout=60)
        assert not check or proc.returncode == 0, err
        return out

    def serve(self) -> str:
        url_file = self.home / "url"
        self.daemon = hubd_process(
            "daemon", "--port", "0", "--url-file", str(url_file), env=self.env
        )
        deadline = time.monotonic() + 20
        while not url_file.exists():
            assert self.daemon.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        self.url = url_file.read_text()
        return self.url


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[[str], Node]]:
    made: list[Node] = []

    def make(name: str) -> Node:
        made.append(Node(tmp_path / name, name))
        return made[-1]

    yield make
    for node in made:
        if node.daemon is not None and node.daemon.poll() is None:
            node.daemon.terminate()
            node.daemon.communicate(timeout=20)


def test_chain_of_three_daemons(nodes: Callable[[str], Node], hub: FakeHub) -> None:
    a, b, c = nodes("node-a"), nodes("node-b"), nodes("node-c")
    a.cli("mirror", MODEL, "--endpoint", hub.endpoint, "-q")
    b.cli("peers", "add", "a", a.serve())
    b.cli("mirror", MODEL, "-q")
    c.cli("mirror", MODEL, "--from", b.serve(), "-q")
    detail = json.loads(c.cli("show", MODEL, "--json"))
    hops = [(h["node"], h["source"]) for h in detail["revisions"][0]["provenance"]]
    assert hops == [
        ("node-a", f"{hub.endpoint}/{MODEL}"),
        ("node-b", f"{a.url}/{MODEL}"),
        ("node-c", f"{b.url}/{MODEL}"),
    ]
    c.cli("verify")


def test_unmodified_hf_cli_downloads_from_a_daemon(
    nodes: Callable[[str], Node], hub: FakeHub, tmp_path: Path
) -> None:
    a = nodes("node-a")
    a.cli("mirror", MODEL, "--endpoint", hub.endpoint, "-q")
    env = {**os.environ, "HF_ENDPOINT": a.serve(), "HF_HOME": str(tmp_path / "hf")}
    target = tmp_path / "download"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "hf"),
            "download",
            MODEL,
            "--include",
            "*.json",
            "--local-dir",
            str(target),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    files = tiny_model_files(seed=0)
    assert (target / "config.json").read_bytes() == files["config.json"]
    assert not (target / "model-00001-of-00002.safetensors").exists()


def test_peer_dying_mid_transfer_falls_back_to_the_hub(
    nodes: Callable[[str], Node], hub: FakeHub
) -> None:
    weights = os.urandom(6 << 20)
    hub.add_repo("acme/big", {"README.md": b"# big\n", "w.safetensors": weights})
    a, b = nodes("node-a"), nodes("node-b")
    a.cli("mirror", "acme/big", "--endpoint", hub.endpoint, "-q")
    b.cli("peers", "add", "a", a.serve())
    b.env["HF_ENDPOINT"] = hub.endpoint
    b.env["HUBD_TIMEOUT"] = "2"
    # Throttle B's download from A by giving it the only slow path: kill A once B has begun.
    mirror = hubd_process("mirror", "acme/big", "--json", env={**b.env, "HUBD_PARTS": "1"})
    partial = b.home / "store" / "tmp" / f"{hashlib.sha256(weights).hexdigest()}.partial"
    deadline = time.monotonic() + 20
    while not partial.exists() and mirror.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert a.daemon is not None
    a.daemon.kill()
    _, err = mirror.communicate(timeout=60)
    assert mirror.returncode == 0, err
    sources = {
        f["path"]: f
        for f in json.loads(b.cli("show", "acme/big", "--json"))["revisions"][0]["files"]
    }
    assert sources["w.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()
    b.cli("verify")
