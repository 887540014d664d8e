"""Two stateless daemons on one catalog and one bucket behind one address: one is killed with
kill -9 in the middle of a download, and huggingface_hub's retry completes on the other."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import Result, hubd_process
from huggingface_hub import hf_hub_download
from support.fakehub import FakeHub
from test_s3 import bucket, credentials, endpoint

__all__ = ["bucket", "credentials", "endpoint"]  # fixtures, used by name

pytestmark = pytest.mark.slow
WEIGHTS = os.urandom(24 * 1024 * 1024)


class Balancer:
    """One loopback address in front of several daemons, as nginx in deploy/compose.yaml:
    round robin, a daemon that refuses the connection skipped, responses paced at ``rate``
    bytes/s so that a download is still running when a daemon is killed."""

    def __init__(self, targets: list[str], rate: int) -> None:
        self.targets = [(urlsplit(t).hostname or "", urlsplit(t).port or 80) for t in targets]
        self.rate = rate
        self.turn = 0
        self.used: list[int] = []  # the target of each connection, in order
        self.sent = [0] * len(targets)  # bytes sent to clients from each target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _connect(self) -> tuple[int, socket.socket]:
        for _ in self.targets:
            index, self.turn = self.turn, (self.turn + 1) % len(self.targets)
            try:
                return index, socket.create_connection(self.targets[index], timeout=30)
            except OSError:
                continue
        raise OSError("no daemon answers")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                index, upstream = self._connect()
            except OSError:
                continue
            self.used.append(index)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, index), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, index: int | None) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
                if index is not None:
                    self.sent[index] += len(data)
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                sock.close()

    def close(self) -> None:
        self.listener.close()


def start_daemon(home: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    url_file = home / "url"
    proc = hubd_process(
        "daemon",
        "--port",
        "0",
        "--url-file",
        str(url_file),
        env={"HUBD_HOME": str(home), "HUBD_NODE_NAME": name},
    )
    deadline = time.monotonic() + 30
    while not url_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, url_file.read_text().strip()


def test_a_daemon_killed_mid_download_the_retry_completes_on_the_other(
    hubd: Callable[..., Result],
    endpoint: str,
    bucket: str,
    credentials: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeHub()
    fake.add_repo("acme/big", {"README.md": b"# big\n", "model.safetensors": WEIGHTS})
    with fake:
        for key, value in {
            "HF_ENDPOINT": fake.endpoint,
            "HUBD_STORE_BACKEND": "s3",
            "HUBD_S3_ENDPOINT": endpoint,
            "HUBD_S3_BUCKET": bucket,
            "HUBD_S3_CREDENTIALS_FILE": str(credentials),
            "HUBD_CATALOG_URL": f"sqlite:///{tmp_path / 'shared.db'}",
            "HUBD_HOME": str(tmp_path / "a"),
        }.items():
            monkeypatch.setenv(key, value)
        assert hubd("mirror", "acme/big", "-q").code == 0
    daemons = [start_daemon(tmp_path / name, name) for name in ("a", "b")]
    balancer = Balancer([url for _, url in daemons], rate=8 * 1024 * 1024)
    got: list[str | BaseException] = []

    def download() -> None:
        try:
            got.append(
                hf_hub_download(
                    "acme/big",
                    "model.safetensors",
                    endpoint=balancer.url,
                    cache_dir=tmp_path / "hf",
                )
            )
        except BaseException as exc:  # reported by the assertion below
            got.append(exc)

    client = threading.Thread(target=download)
    try:
        client.start()
        deadline = time.monotonic() + 30
        while max(balancer.sent) < 4 * 1024 * 1024:
            assert client.is_alive() and time.monotonic() < deadline, got
            time.sleep(0.02)
        serving = balancer.sent.index(max(balancer.sent))
        victim, before = daemons[serving][0], balancer.sent[1 - serving]
        victim.kill()
        victim.wait(timeout=10)
        client.join(timeout=60)
        assert not client.is_alive()
        (path,) = got
        assert isinstance(path, str), path
        assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(WEIGHTS).digest()
        assert balancer.sent[1 - serving] - before > len(WEIGHTS) // 2  # the rest: the other
    finally:
        balancer.close()
        for proc, _ in daemons:
            proc.kill()
            proc.wait(timeout=10)
