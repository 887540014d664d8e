"""Benchmark: `hubd daemon` serving a large file next to nginx, and node-to-node mirroring.

A generated repo (default one 1 GiB safetensors shard plus small files) is served by the loopback
Hugging Face-compatible server and mirrored with `hubd mirror` into a temporary home; that home
is then served by a real `hubd daemon` process, and the same blob file (same disk, same page
cache) by an nginx master of our own (Debian's `nginx`, installed with apt-get if it is not on
PATH) with `sendfile on`, listening on 127.0.0.1 with a generated config in a temporary folder.

1. Serving: one client, a plain http.client downloader reading the body in 1 MiB chunks and
   discarding them, fetches the file from hubd (`/{repo}/resolve/main/{file}`) and from nginx
   (the blob's plain URL), alternating, several rounds after one warm-up each; we report the
   median MB/s of each, the server processes' CPU seconds per download and `ratio hubd/nginx`
   (target >= 0.8).
2. Node to node: `hubd mirror` of the repo from the hubd daemon as a peer (`--endpoint`) next to
   `hubd mirror` of it from the loopback server, each into a fresh home (deleted after every
   round), alternating; we report the median seconds and MB/s of each and the ratio.

Everything listens on 127.0.0.1 only; every wait is bounded.

    .venv/bin/python bench/serve.py [--bytes N] [--rounds R] [--mirror-rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loopback import start_hub
from report import record

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the fakes and generators, outside the wheel
BIN = Path(sys.executable).parent
REPO = "bench/serve"
FILE = "model.safetensors"
CHUNK = 1024 * 1024
TIMEOUT = 600.0  # seconds any one download, mirror or server start may take

NGINX_CONF = """\
{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        {extra}
    }}
}}
"""


@dataclass
class Fetch:
    seconds: float
    first_byte: float
    server_cpu: float


def generate(repo_dir: Path, total: int) -> None:
    marker = repo_dir / ".complete"
    if marker.exists() and marker.read_text() == f"{total}/1":
        return
    shutil.rmtree(repo_dir, ignore_errors=True)
    from tests.support.modelgen import big_safetensors_repo

    print(f"bench: generating a {total / 2**20:.0f} MiB repo in {repo_dir}", flush=True)
    big_safetensors_repo(repo_dir, total_bytes=total, shards=1)
    marker.write_text(f"{total}/1")


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one child process; its stderr is shown if it fails or overruns."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {' '.join(cmd)} took more than {TIMEOUT:.0f} s") from None
    if proc.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.decode()}")
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of pid and its direct children (nginx: master + workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def fetch(url: str, size: int, server_pid: int) -> Fetch:
    """GET url, reading the body in 1 MiB chunks and discarding them."""
    parts = urlsplit(url)
    buffer = memoryview(bytearray(CHUNK))
    cpu = cpu_seconds(server_pid)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request("GET", parts.path)
        resp = conn.getresponse()
        first_byte = time.perf_counter() - start
        if resp.status != 200:
            raise SystemExit(f"bench: GET {url}: HTTP {resp.status} {resp.read(500)!r}")
        received = 0
        while n := resp.readinto(buffer):
            received += n
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    if received != size:
        raise SystemExit(f"bench: GET {url}: {received} bytes, expected {size}")
    return Fetch(seconds, first_byte, cpu_seconds(server_pid) - cpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not listen on 127.0.0.1:{port}")


def nginx_binary() -> str:
    """Debian's nginx, installed with apt-get when it is not on PATH yet."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if shutil.which("apt-get") is None or (sudo and shutil.which("sudo") is None):
        raise SystemExit("bench: nginx is not installed and apt-get cannot install it here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx"],
    ):
        print(f"bench: nginx is not on PATH; running {' '.join(cmd)}", flush=True)
        try:
            subprocess.run(cmd, env=env, check=True, timeout=TIMEOUT, capture_output=True)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"bench: {' '.join(cmd)} failed: {exc.stderr.decode()}") from None
        except subprocess.TimeoutExpired:
            raise SystemExit(f"bench: {' '.join(cmd)} took more than {TIMEOUT:.0f} s") from None
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise SystemExit("bench: apt-get installed nginx but no nginx binary was found")
    return found


def start_nginx(tmp: Path, root: Path, extra: str = "") -> tuple[subprocess.Popen[bytes], int]:
    """Our own nginx master (not daemonized) serving ``root`` on a free loopback port;
    ``extra`` are directives for its server block (``limit_rate 16m;``)."""
    nginx = nginx_binary()
    port = free_port()
    # As root the workers would run as nobody, who may not enter the private temp folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root, extra=extra))
    cmd = [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    cmd += ["-g", "daemon off;"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc, "nginx")
    return proc, port


def start_daemon(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    url_file = home.parent / "daemon-url"
    url_file.unlink(missing_ok=True)
    log = home.parent / "daemon.log"  # a file, not a pipe nobody drains
    cmd = [str(BIN / "hubd"), "daemon", "--port", "0", "--url-file", str(url_file)]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd, env={**env, "HUBD_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=stderr
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log.read_text(errors="replace")
            raise SystemExit(f"bench: hubd daemon exited with {proc.returncode}: {err}")
        if url_file.exists():
            return proc, url_file.read_text().strip()
        time.sleep(0.1)
    raise SystemExit("bench: hubd daemon did not start")


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024**3)
    parser.add_argument("--rounds", type=int, default=9, help="downloads of each server")
    parser.add_argument("--mirror-rounds", type=int, default=3, help="mirrors from each source")
    args = parser.parse_args()

    work = ROOT / ".bench" / "serve"
    work.mkdir(parents=True, exist_ok=True)
    repo_dir = work / "repo"
    generate(repo_dir, args.bytes)
    size = (repo_dir / FILE).stat().st_size
    total = sum(p.stat().st_size for p in repo_dir.iterdir() if p.is_file() and p.name[0] != ".")
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp / "hf-home"))
    hubd = str(BIN / "hubd")

    hub = daemon = nginx = None
    serving: dict[str, list[Fetch]] = {"hubd daemon": [], "nginx": []}
    mirrors: dict[str, list[float]] = {"from hubd daemon": [], "from loopback hub": []}
    try:
        hub, endpoint = start_hub(tmp, REPO, repo_dir)
        home = tmp / "served-home"
        run([hubd, "mirror", REPO, "-q", "--endpoint", endpoint], {**env, "HUBD_HOME": str(home)})
        blob = next((home / "store" / "snapshots" / REPO).glob(f"*/{FILE}")).resolve()
        daemon, daemon_url = start_daemon(home, env)
        (tmp / "nginx").mkdir()
        nginx, port = start_nginx(tmp / "nginx", blob.parent)
        urls = {
            "hubd daemon": (f"{daemon_url}/{REPO}/resolve/main/{FILE}", daemon.pid),
            "nginx": (f"http://127.0.0.1:{port}/{blob.name}", nginx.pid),
        }
        for url, pid in urls.values():  # warm-up: page cache, connections, first requests
            fetch(url, size, pid)
        for _ in range(args.rounds):
            for name, (url, pid) in urls.items():
                serving[name].append(fetch(url, size, pid))

        sources = {"from hubd daemon": daemon_url, "from loopback hub": endpoint}
        for _ in range(args.mirror_rounds):
            for name, source in sources.items():
                target = tmp / "mirror-home"
                shutil.rmtree(target, ignore_errors=True)
                subprocess.run(["sync"], check=True, timeout=TIMEOUT)
                cmd = [hubd, "mirror", REPO, "-q", "--endpoint", source]
                mirrors[name].append(run(cmd, {**env, "HUBD_HOME": str(target)}))
                shutil.rmtree(target, ignore_errors=True)
    finally:
        stop(nginx, signal.SIGQUIT)
        stop(daemon)
        stop(hub)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"file: {size / 2**20:.0f} MiB ({FILE}), same blob on the same disk for both servers; "
        f"{args.rounds} rounds after a warm-up, median; one http.client reader, 1 MiB chunks"
    )
    print(f"{'server':<20} {'seconds':>8} {'MB/s':>8} {'first byte ms':>14} {'server CPU s':>13}")
    rate = {}
    for name, fetches in serving.items():
        seconds = statistics.median(f.seconds for f in fetches)
        first = statistics.median(f.first_byte for f in fetches) * 1000
        cpu = statistics.median(f.server_cpu for f in fetches)
        rate[name] = size / 1e6 / seconds
        print(f"{name:<20} {seconds:8.3f} {rate[name]:8.0f} {first:14.1f} {cpu:13.2f}")
    ratio = rate["hubd daemon"] / rate["nginx"]
    print(f"ratio hubd/nginx: {ratio:.2f}x throughput (target >= 0.8)")
    record("serve", "hubd daemon, one client", rate["hubd daemon"], "MB/s", "nginx sendfile",
           rate["nginx"], ">= 0.8")  # fmt: skip
    print()
    print(
        f"mirror: {total / 2**20:.0f} MiB repo into a fresh home, {args.mirror_rounds} rounds, "
        "median; every byte verified"
    )
    print(f"{'hubd mirror':<20} {'seconds':>8} {'MB/s':>8}")
    med = {}
    for name, times in mirrors.items():
        med[name] = statistics.median(times)
        print(f"{name:<20} {med[name]:8.2f} {total / 1e6 / med[name]:8.0f}")
    ratio = med["from hubd daemon"] / med["from loopback hub"]
    print(
        f"ratio peer/loopback hub: {ratio:.2f}x time "
        f"({1 / ratio:.2f}x throughput; the loopback hub is the reference)"
    )
    record("serve", "hubd mirror from a hubd peer", med["from hubd daemon"], "s",
           "from the loopback hub", med["from loopback hub"], "none set")  # fmt: skip


if __name__ == "__main__":
    main()
