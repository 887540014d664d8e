"""Benchmark: `snapshot_download` through a hubd pull-through, cold and warm, next to direct.

A generated repo (default one 512 MiB safetensors shard plus small files) is served by the
loopback Hugging Face-compatible server (its own process). Each round, alternating:

1. direct: an unmodified ``snapshot_download`` from the loopback server into a fresh cache;
2. cold: a fresh ``hubd daemon`` home with ``[proxy] enabled = true`` (nothing in its catalog),
   the same ``snapshot_download`` through it: hubd resolves, fetches, verifies and streams;
3. warm: the same download through that daemon again, now answered from its verified store.

Time to first byte is that of a plain GET of the large file (direct from the server; cold from a
second fresh proxy). We report the medians and the ratios ``cold/direct`` (target <= 1.1) and
``warm/direct`` (target <= 1.0). Everything listens on 127.0.0.1 only; every wait is bounded.

    .venv/bin/python bench/proxy.py [--bytes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from loopback import start_hub
from report import record
from serve import fetch, generate

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REPO = "bench/proxy"
FILE = "model.safetensors"
TIMEOUT = 600.0


def download(endpoint: str, cache: Path) -> float:
    """Wall seconds of an unmodified snapshot_download in a child process."""
    code = (
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], endpoint=sys.argv[2], cache_dir=sys.argv[3])"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, REPO, endpoint, str(cache)],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"bench: snapshot_download from {endpoint} failed: {proc.stderr!r}")
    return time.perf_counter() - start


def first_byte(url: str, size: int, pid: int) -> float:
    """Seconds to the first byte of a GET of ``url``, following the Hub's one redirect (LFS)."""
    parts = urlsplit(url)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request("GET", parts.path)
        resp = conn.getresponse()
        location = resp.getheader("Location") if resp.status == 302 else None
        resp.read()
    finally:
        conn.close()
    redirect = time.perf_counter() - start if location else 0.0
    return redirect + fetch(location or url, size, pid).first_byte


def start_proxy(home: Path, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    """A fresh `hubd daemon` with the pull-through on; its URL once it listens."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "hubd.toml").write_text(f'endpoint = "{upstream}"\n\n[proxy]\nenabled = true\n')
    url_file = home / "url"
    env = {**os.environ, "HUBD_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [str(BIN / "hubd"), "daemon", "--port", "0", "--url-file", str(url_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not url_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench: hubd daemon did not start")
        time.sleep(0.05)
    return proc, url_file.read_text()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=512 * 1024 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "hubd-bench-proxy"
    work.mkdir(exist_ok=True)
    repo_dir = work / "repo"
    generate(repo_dir, args.bytes)
    size = (repo_dir / FILE).stat().st_size
    server, upstream = start_hub(work, REPO, repo_dir)
    times: dict[str, list[float]] = {"direct": [], "cold": [], "warm": []}
    first: dict[str, list[float]] = {"direct": [], "cold": []}
    try:
        for round_ in range(args.rounds):
            times["direct"].append(download(upstream, work / "cache"))
            shutil.rmtree(work / "cache")
            proxy, url = start_proxy(work / "home", upstream)
            try:
                times["cold"].append(download(url, work / "cache"))
                shutil.rmtree(work / "cache")
                times["warm"].append(download(url, work / "cache"))
                shutil.rmtree(work / "cache")
            finally:
                stop(proxy)
            first["direct"].append(
                first_byte(f"{upstream}/{REPO}/resolve/main/{FILE}", size, server.pid)
            )
            proxy, url = start_proxy(work / "home", upstream)
            try:
                first["cold"].append(
                    first_byte(f"{url}/{REPO}/resolve/main/{FILE}", size, proxy.pid)
                )
            finally:
                stop(proxy)
            print(
                f"bench: round {round_ + 1}: direct {times['direct'][-1]:.2f} s, cold "
                f"{times['cold'][-1]:.2f} s, warm {times['warm'][-1]:.2f} s",
                flush=True,
            )
    finally:
        stop(server)
        shutil.rmtree(work / "home", ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = size / 2**20
    for kind in ("direct", "cold", "warm"):
        print(f"{kind:>6}: {med[kind]:.2f} s ({mb / med[kind]:.0f} MiB/s)")
    print(
        f"time to first byte: direct {statistics.median(first['direct']) * 1000:.0f} ms, cold "
        f"proxy {statistics.median(first['cold']) * 1000:.0f} ms"
    )
    print(f"ratio cold/direct {med['cold'] / med['direct']:.2f} (target <= 1.1)")
    print(f"ratio warm/direct {med['warm'] / med['direct']:.2f} (target <= 1.0)")
    name = f"snapshot_download {mb:.0f} MiB through a"
    record("proxy", f"{name} cold proxy", med["cold"], "s", "direct", med["direct"], "<= 1.1")
    record("proxy", f"{name} warm proxy", med["warm"], "s", "direct", med["direct"], "<= 1.0")


if __name__ == "__main__":
    main()
