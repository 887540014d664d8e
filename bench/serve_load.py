"""Benchmark: `hubd daemon` serving under load, next to nginx on the same machine, same run.

A generated repo (one 1 GiB safetensors file plus small files) is served by the loopback Hugging
Face-compatible server and mirrored with `hubd mirror` into a temporary home, which a real
`hubd daemon` then serves. The reference is an nginx master of our own (`sendfile on`, one
worker as hubd is one process, no access log as hubd keeps none) serving the same blob file
(same disk, same page cache) at the same `/{repo}/resolve/main/{file}` path, with the Hub
headers hubd answered there (ETag, X-Repo-Commit, X-Linked-*, copied from hubd's HEAD), so
unmodified huggingface_hub clients talk to either server through the same code path.

1. Downloads: N (default 32) client processes, forked once huggingface_hub is imported and
   started together, each download the file from one server; hubd and nginx rounds alternate.
   With room on the disk for every client's copy, each runs `hf_hub_download` into a cache dir
   of its own (deleted after every round; every round starts after a `sync`): the clients' disk
   writes then bound both servers alike. Without the room (or with ``--sink discard``) each
   runs what hf_hub_download runs on the wire, `get_hf_file_metadata` (the HEAD) and `http_get`
   of its location, into /dev/null, for both servers. We report the aggregate MB/s (all bytes
   over first start to last end), the server's CPU seconds, and `ratio hubd/nginx` (target
   >= 0.9).
   Time to first byte: while the clients download, a prober in this process opens a fresh
   connection every 20 ms and GETs `Range: bytes=0-0` of the same resolve URL; its latency is
   connect to the one body byte read. One probe at a time: a slow server gets fewer probes, so
   its p99 is if anything understated. Target: hubd's p99 <= 50 ms (nginx's is the reference).
   RSS: the daemon's VmRSS at start, before the load (after one warm-up download and the
   model-info check), VmHWM after the load (its peak) and VmRSS after it; target: peak minus
   before-load <= 64 MiB.
2. Model info: `wrk -t 1 -c 1000 -d 5s` (installed with apt-get when absent) of
   `GET /api/models/{repo}`, what `HfApi().model_info(repo)` sends (checked first with one
   real `model_info` call), against hubd and against nginx serving the body hubd sent as a
   static file, alternating; median req/s of each. Target: hubd >= 2,000 req/s.

Everything listens on 127.0.0.1 only; every wait is bounded; every server is stopped at the end.

    .venv/bin/python bench/serve_load.py [--bytes N] [--clients C] [--rounds R]
                                         [--sink auto|cache|discard]
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub.file_download import get_hf_file_metadata, http_get
from huggingface_hub.utils import disable_progress_bars
from loopback import start_hub
from report import record
from serve import (
    FILE,
    NGINX_CONF,
    REPO,
    TIMEOUT,
    cpu_seconds,
    fetch,
    free_port,
    generate,
    nginx_binary,
    run,
    start_daemon,
    stop,
    wait_listening,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROBE_INTERVAL = 0.02  # seconds between two first-byte probes
SAMPLE_INTERVAL = 0.05  # seconds between two RSS samples
WRK_CONNECTIONS = 1000
WRK_SECONDS = 5
WRK_ROUNDS = 3
RSS_GROWTH_MIB = 64
TTFB_TARGET_MS = 50.0
RPS_TARGET = 2000.0
HUB_HEADERS = ("ETag", "X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size", "Content-Disposition")

Outcome = tuple[float, float, int] | str  # (start, end, bytes) of one client, or its error


@dataclass
class Round:
    seconds: float  # first client's start to last client's end
    slowest: float  # the longest single download
    server_cpu: float
    ttfb: list[float]


@dataclass
class Wrk:
    rps: float
    p99_ms: float
    errors: int  # socket errors and non-2xx answers


def client(endpoint: str, cache_dir: str, sink: str, go: Barrier, out: Queue[Outcome]) -> None:
    """One downloader (a forked process): waits for the others, then fetches the file once."""
    try:
        go.wait(timeout=60)
        start = time.perf_counter()
        if sink == "cache":
            path = hf_hub_download(REPO, FILE, cache_dir=cache_dir, endpoint=endpoint, token=False)
            size = Path(path).stat().st_size
        else:
            meta = get_hf_file_metadata(hf_hub_url(REPO, FILE, endpoint=endpoint), token=False)
            with Path(os.devnull).open("wb") as devnull:
                http_get(meta.location, devnull, expected_size=meta.size)
            size = meta.size or 0
        out.put((start, time.perf_counter(), size))
    except Exception as exc:  # reported by the parent, which fails the run
        out.put(f"{type(exc).__name__}: {exc}")


def probe(url: str, done: threading.Event) -> list[float]:
    """Seconds from connecting to reading the file's first byte, on a fresh connection each."""
    parts = urlsplit(url)
    latencies = []
    while not done.wait(PROBE_INTERVAL):
        start = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.request("GET", parts.path, headers={"Range": "bytes=0-0"})
            resp = conn.getresponse()
            body = resp.read(1)
        finally:
            conn.close()
        latencies.append(time.perf_counter() - start)
        if resp.status != 206 or len(body) != 1:
            raise SystemExit(f"bench: ranged GET {url}: HTTP {resp.status}, {len(body)} bytes")
    return latencies


def status_kib(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"bench: no {field} in /proc/{pid}/status")


def load_round(
    endpoint: str, url: str, pid: int, size: int, clients: int, sink: str, tmp: Path
) -> Round:
    """``clients`` forked downloaders at once from ``endpoint``, ``url`` probed meanwhile."""
    subprocess.run(["sync"], check=True, timeout=TIMEOUT)  # no earlier writeback in this round
    fork = multiprocessing.get_context("fork")  # the children inherit the imported modules
    go = fork.Barrier(clients + 1)
    out: Queue[Outcome] = fork.Queue()
    caches = tmp / "clients"
    procs = [
        fork.Process(target=client, args=(endpoint, str(caches / str(i)), sink, go, out))
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    try:
        go.wait(timeout=60)
        cpu = cpu_seconds(pid)
        done = threading.Event()
        deadline = time.monotonic() + TIMEOUT
        with ThreadPoolExecutor(1) as pool:
            probing = pool.submit(probe, url, done)
            try:
                outcomes = [out.get(timeout=max(1, deadline - time.monotonic())) for _ in procs]
            finally:
                done.set()
            ttfb = probing.result()
        cpu = cpu_seconds(pid) - cpu
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        shutil.rmtree(caches, ignore_errors=True)
    spans: list[tuple[float, float]] = []
    for outcome in outcomes:
        if isinstance(outcome, str):
            raise SystemExit(f"bench: a client downloading from {endpoint} failed: {outcome}")
        start, end, received = outcome
        if received != size:
            raise SystemExit(f"bench: a client got {received} bytes from {endpoint}, not {size}")
        spans.append((start, end))
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return Round(seconds, max(end - start for start, end in spans), cpu, ttfb)


def wrk_binary() -> str:
    """Debian's wrk, installed with apt-get when it is not on PATH yet."""
    if found := shutil.which("wrk"):
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
    ):
        print(f"bench: wrk is not on PATH; running {' '.join(cmd)}", flush=True)
        try:
            subprocess.run(cmd, env=env, check=True, timeout=TIMEOUT, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SystemExit(f"bench: cannot install wrk ({' '.join(cmd)}): {exc}") from None
    if found := shutil.which("wrk"):
        return found
    raise SystemExit("bench: apt-get installed wrk but no wrk binary was found")


def wrk(binary: str, url: str) -> Wrk:
    """One bounded wrk run: one thread (one core at most), WRK_CONNECTIONS connections."""
    cmd = [binary, "-t", "1", "-c", str(WRK_CONNECTIONS), "-d", f"{WRK_SECONDS}s"]
    cmd += ["--timeout", "5s", "--latency", url]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WRK_SECONDS + 60)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench: {' '.join(cmd)} did not finish") from None
    rps = re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", proc.stdout)
    if proc.returncode or rps is None or p99 is None:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stdout}{proc.stderr}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    socket_errors = re.search(r"Socket errors:(.*)", proc.stdout)
    errors = sum(
        int(n) for n in re.findall(r"\d+", socket_errors.group(1) if socket_errors else "")
    )
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", proc.stdout):
        errors += int(non_2xx.group(1))
    return Wrk(float(rps.group(1)), float(p99.group(1)) * scale, errors)


def start_nginx(tmp: Path, root: Path, extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """serve.py's nginx with room for wrk's connections (its config allows 64)."""
    template = NGINX_CONF.replace("worker_connections 64;", "worker_connections 4096;")
    if template == NGINX_CONF:
        raise SystemExit("bench: serve.py's nginx config no longer sets worker_connections 64")
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # as in serve.py: workers may enter tmp
    conf = tmp / "nginx.conf"
    conf.write_text(template.format(user=user, tmp=tmp, port=port, root=root, extra=extra))
    cmd = [nginx_binary(), "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    proc = subprocess.Popen(
        [*cmd, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(port, proc, "nginx")
    return proc, port


def hub_headers(url: str) -> dict[str, str]:
    """The Hub headers hubd answers a HEAD of the file with, for nginx to answer alike."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("HEAD", parts.path)
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    headers = {name: resp.getheader(name) or "" for name in HUB_HEADERS}
    if resp.status != 200 or not all(headers.values()) or "'" in "".join(headers.values()):
        raise SystemExit(f"bench: HEAD {url}: HTTP {resp.status}, Hub headers {headers}")
    return headers


def get_body(url: str) -> bytes:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", parts.path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise SystemExit(f"bench: GET {url}: HTTP {resp.status} {body[:500]!r}")
    return body


def p99(samples: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024**3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="load rounds of each server")
    parser.add_argument(
        "--sink",
        choices=("auto", "cache", "discard"),
        default="auto",
        help="hf_hub_download into cache dirs, or http_get to /dev/null (auto: cache if it fits)",
    )
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if files < 2 * WRK_CONNECTIONS + 256:
        raise SystemExit(f"bench: RLIMIT_NOFILE hard limit {hard} is too low for wrk -c 1000")
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, hard))  # for wrk, nginx and the daemon
    work = ROOT / ".bench" / "serve_load"
    work.mkdir(parents=True, exist_ok=True)
    repo_dir = work / "repo"
    generate(repo_dir, args.bytes)
    size = (repo_dir / FILE).stat().st_size
    sink = args.sink
    if sink == "auto":
        need, free = args.clients * size + 2 * 2**30, shutil.disk_usage(work).free
        sink = "cache" if free >= need else "discard"
        print(
            f"bench: {free / 2**30:.0f} GiB free, {need / 2**30:.0f} GiB needed for every "
            f"client's copy: clients {'write into cache dirs' if sink == 'cache' else 'discard'}",
            flush=True,
        )
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(tmp / "hf-home"))
    disable_progress_bars()  # the clients' tqdm would cost CPU the servers share

    hub = daemon = nginx = None
    rounds: dict[str, list[Round]] = {"hubd daemon": [], "nginx": []}
    rates: dict[str, list[Wrk]] = {"hubd daemon": [], "nginx static file": []}
    try:
        hub, upstream = start_hub(tmp, REPO, repo_dir)
        home = tmp / "served-home"
        run([str(BIN / "hubd"), "mirror", REPO, "-q", "--endpoint", upstream],
            {**env, "HUBD_HOME": str(home)})  # fmt: skip
        blob = next((home / "store" / "snapshots" / REPO).glob(f"*/{FILE}")).resolve()
        daemon, daemon_url = start_daemon(home, env)
        rss_start = status_kib(daemon.pid, "VmRSS")

        info = HfApi(endpoint=daemon_url, token=False).model_info(REPO)
        if FILE not in [s.rfilename for s in info.siblings or []]:
            raise SystemExit(f"bench: hubd's model_info({REPO!r}) lists no {FILE}: {info}")
        info_path = f"/api/models/{REPO}"
        body = get_body(daemon_url + info_path)
        resolve = f"/{REPO}/resolve/main/{FILE}"
        headers = hub_headers(daemon_url + resolve)

        root = tmp / "nginx-root"
        (root / info_path.lstrip("/")).parent.mkdir(parents=True)
        (root / info_path.lstrip("/")).write_bytes(body)
        added = "".join(f"add_header {k} '{v}' always; " for k, v in headers.items())
        extra = (
            f"access_log off; location = {resolve} {{ alias {blob}; etag off; {added}}} "
            "location /api/ { default_type application/json; }"
        )
        (tmp / "nginx").mkdir()
        nginx, port = start_nginx(tmp / "nginx", root, extra)
        nginx_url = f"http://127.0.0.1:{port}"
        servers = {"hubd daemon": (daemon_url, daemon.pid), "nginx": (nginx_url, nginx.pid)}
        for url, pid in servers.values():  # warm-up: page cache, first requests
            fetch(url + resolve, size, pid)
        if get_body(nginx_url + info_path) != body or hub_headers(nginx_url + resolve) != headers:
            raise SystemExit("bench: nginx does not answer as hubd does")

        rss_before = status_kib(daemon.pid, "VmRSS")
        for _ in range(args.rounds):
            for name, (url, pid) in servers.items():
                print(f"bench: {args.clients} clients downloading from {name}", flush=True)
                rounds[name].append(
                    load_round(url, url + resolve, pid, size, args.clients, sink, tmp)
                )
        rss_peak = status_kib(daemon.pid, "VmHWM")
        time.sleep(1)
        rss_after = status_kib(daemon.pid, "VmRSS")

        binary = wrk_binary()
        for _ in range(WRK_ROUNDS):
            for name, url in (("hubd daemon", daemon_url), ("nginx static file", nginx_url)):
                rates[name].append(wrk(binary, url + info_path))
    finally:
        stop(nginx, signal.SIGQUIT)
        stop(daemon)
        stop(hub)
        shutil.rmtree(tmp, ignore_errors=True)

    how = (
        "hf_hub_download, each into its own cache dir"
        if sink == "cache"
        else "get_hf_file_metadata + http_get into /dev/null"
    )
    print(
        f"{args.clients} clients at once x {size / 2**20:.0f} MiB ({how}); {args.rounds} rounds "
        f"of each server, alternating, median; first byte: a fresh-connection ranged GET of "
        f"byte 0 every {PROBE_INTERVAL * 1000:.0f} ms during the load"
    )
    print(
        f"{'server':<12} {'MB/s':>7} {'each round':>12} {'slowest s':>10} {'server CPU s':>13} "
        f"{'TTFB p50 ms':>12} {'p99 ms':>7} {'max ms':>7} {'probes':>7}"
    )
    rate, ttfb99 = {}, {}
    for name, runs in rounds.items():
        each = [args.clients * size / 1e6 / r.seconds for r in runs]
        rate[name] = statistics.median(each)
        slowest = statistics.median(r.slowest for r in runs)
        cpu = statistics.median(r.server_cpu for r in runs)
        ttfb = [t * 1000 for r in runs for t in r.ttfb]
        ttfb99[name] = p99(ttfb)
        print(
            f"{name:<12} {rate[name]:7.0f} {'/'.join(f'{r:.0f}' for r in each):>12} "
            f"{slowest:10.2f} {cpu:13.2f} "
            f"{statistics.median(ttfb):12.1f} {ttfb99[name]:7.1f} {max(ttfb):7.1f} {len(ttfb):7}"
        )
    ratio = rate["hubd daemon"] / rate["nginx"]
    print(f"ratio hubd/nginx: {ratio:.2f}x aggregate throughput (target >= 0.9)")
    hubd99 = ttfb99["hubd daemon"]
    verdict = "ok" if hubd99 <= TTFB_TARGET_MS else "MISSED"
    print(f"hubd p99 time to first byte under load: {hubd99:.1f} ms (target <= 50 ms): {verdict}")
    before, peak, after = rss_before / 1024, rss_peak / 1024, rss_after / 1024
    verdict = "ok" if peak - before <= RSS_GROWTH_MIB else "MISSED"
    print(
        f"hubd RSS: {rss_start / 1024:.0f} MiB at start, {before:.0f} MiB before the load, "
        f"{peak:.0f} MiB peak (VmHWM), {after:.0f} MiB after; growth {peak - before:.0f} MiB "
        f"(target <= {RSS_GROWTH_MIB} MiB): {verdict}"
    )
    record("serve_load", f"hubd daemon, {args.clients} clients at once", rate["hubd daemon"],
           "MB/s", "nginx sendfile", rate["nginx"], ">= 0.9")  # fmt: skip
    record("serve_load", "hubd p99 first byte under load", hubd99, "ms",
           "nginx p99 under load", ttfb99["nginx"],
           f"<= {TTFB_TARGET_MS / ttfb99['nginx']:.4g}")  # fmt: skip
    record("serve_load", "hubd peak RSS under load", peak, "MiB", "before the load", before,
           f"<= {(before + RSS_GROWTH_MIB) / before:.4g}")  # fmt: skip
    print()
    print(
        f"model info: wrk -t 1 -c {WRK_CONNECTIONS} -d {WRK_SECONDS}s GET {info_path} "
        f"({len(body)} bytes), {WRK_ROUNDS} runs of each, alternating, median"
    )
    print(f"{'server':<18} {'req/s':>8} {'each run':>20} {'p99 ms':>8} {'errors':>7}")
    rps = {}
    for name, wrks in rates.items():
        rps[name] = statistics.median(w.rps for w in wrks)
        runs_rps = "/".join(f"{w.rps:.0f}" for w in wrks)
        p99_ms = statistics.median(w.p99_ms for w in wrks)
        errors = sum(w.errors for w in wrks)
        print(f"{name:<18} {rps[name]:8.0f} {runs_rps:>20} {p99_ms:8.1f} {errors:7}")
    verdict = "ok" if rps["hubd daemon"] >= RPS_TARGET else "MISSED"
    print(f"hubd model info: {rps['hubd daemon']:.0f} req/s (target >= 2000): {verdict}")
    record("serve_load", f"hubd model_info, {WRK_CONNECTIONS} connections", rps["hubd daemon"],
           "req/s", "nginx static file", rps["nginx static file"],
           f">= {RPS_TARGET / rps['nginx static file']:.4g}")  # fmt: skip


if __name__ == "__main__":
    main()
