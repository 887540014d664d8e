"""Benchmark: blobs in S3-compatible object storage next to the filesystem store, same run.

Needs the S3 server of tests/s3.sh (`make bench` runs it so: ``bash tests/s3.sh .venv/bin/python
bench/s3.py``). The generated repo of bench/mirror.py (default 1 GiB in one shard) is served by
the loopback Hub; alternating for several rounds:

1. Mirror: `hubd mirror` into a fresh home with the filesystem store, and into a fresh home
   whose blobs go to a new prefix of the bucket (hashing, staged parts, the server-side commit).
2. Serve: a `hubd daemon` on each home; one client downloads the shard (1 MiB reads, discarded)
   from the filesystem daemon (sendfile), from the S3 daemon streaming the object, and from the
   S3 daemon with ``s3.redirect`` (a 302, then straight from the bucket).

Reported: median seconds and MB/s, the ratios S3 / filesystem, and the peak RSS of each mirror
process and each daemon (VmHWM): flat in the file size, the bytes are never held whole.

    bash tests/s3.sh .venv/bin/python bench/s3.py [--bytes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from loopback import start_hub
from mirror import BIN, ROOT, Run, generate, timed
from report import record
from serve import start_daemon, stop

REPO = "bench/s3"
CHUNK = 1024 * 1024


def download(url: str) -> tuple[float, int]:
    """Seconds to fetch ``url`` (following one redirect, as huggingface_hub does) and bytes."""
    start = time.perf_counter()
    for _ in range(2):
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=600)
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        answer = conn.getresponse()
        if answer.status == 302:
            url = answer.getheader("Location") or ""
            answer.read()
            conn.close()
            continue
        if answer.status != 200:
            raise SystemExit(f"bench: GET {url}: {answer.status} {answer.read()[:300]!r}")
        count = 0
        while chunk := answer.read(CHUNK):
            count += len(chunk)
        conn.close()
        return time.perf_counter() - start, count
    raise SystemExit("bench: redirected twice")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024**3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    endpoint = os.environ.get("HUBD_TEST_S3_URL")
    if not endpoint:
        raise SystemExit("bench: run through tests/s3.sh (it starts SeaweedFS)")
    sys.path.insert(0, str(ROOT))
    from hubd.store.s3 import make_client

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    make_client(endpoint, "us-east-1", None).create_bucket(Bucket=bucket)
    work = ROOT / ".bench" / "s3"
    work.mkdir(parents=True, exist_ok=True)
    repo_dir = work / "repo"
    generate(repo_dir, args.bytes, 1)
    shard = max(repo_dir.glob("*.safetensors"), key=lambda p: p.stat().st_size)
    size = shard.stat().st_size
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    s3 = {"HUBD_STORE_BACKEND": "s3", "HUBD_S3_ENDPOINT": endpoint, "HUBD_S3_BUCKET": bucket}
    mirrors: dict[str, list[Run]] = {"fs": [], "s3": []}
    serves: dict[str, list[float]] = {"fs": [], "s3 stream": [], "s3 redirect": []}
    rss: dict[str, float] = {}
    hub, endpoint_hub = start_hub(work, REPO, repo_dir)
    try:
        for round_ in range(args.rounds):
            homes = {"fs": work / "home-fs", "s3": work / "home-s3"}
            envs = {
                "fs": {**base, "HUBD_HOME": str(homes["fs"])},
                "s3": {
                    **base,
                    **s3,
                    "HUBD_HOME": str(homes["s3"]),
                    "HUBD_S3_PREFIX": f"r{round_}/",
                },
            }
            for name in ("fs", "s3"):
                shutil.rmtree(homes[name], ignore_errors=True)
                env = {**envs[name], "HF_ENDPOINT": endpoint_hub}
                mirrors[name].append(timed([str(BIN / "hubd"), "mirror", REPO, "--quiet"], env))
            for name, env in (
                ("fs", envs["fs"]),
                ("s3 stream", envs["s3"]),
                ("s3 redirect", {**envs["s3"], "HUBD_S3_REDIRECT": "true"}),
            ):
                daemon, url = start_daemon(Path(env["HUBD_HOME"]), env)
                try:
                    seconds, count = download(f"{url}/{REPO}/resolve/main/{shard.name}")
                    if count != size:
                        raise SystemExit(f"bench: {name}: got {count} of {size} bytes")
                    serves[name].append(seconds)
                    rss[name] = max(rss.get(name, 0.0), peak_rss_mb(daemon.pid))
                finally:
                    stop(daemon)
    finally:
        stop(hub)

    mb = size / 1e6
    print(f"{size / 2**20:.0f} MiB shard; {args.rounds} rounds, median")
    print(f"{'':<22} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    median = {}
    for name, runs in mirrors.items():
        median[f"mirror {name}"] = statistics.median(r.seconds for r in runs)
        peak = max(r.peak_rss_mb for r in runs)
        print(
            f"{'mirror into ' + name:<22} {median[f'mirror {name}']:8.2f} "
            f"{mb / median[f'mirror {name}']:8.0f} {peak:12.0f}"
        )
    for name, times in serves.items():
        median[name] = statistics.median(times)
        print(
            f"{'serve ' + name:<22} {median[name]:8.2f} {mb / median[name]:8.0f} {rss[name]:12.0f}"
        )
    print(f"ratio mirror s3 / fs: {median['mirror s3'] / median['mirror fs']:.2f}x time")
    print(f"ratio serve s3 stream / fs: {median['s3 stream'] / median['fs']:.2f}x time")
    print(f"ratio serve s3 redirect / fs: {median['s3 redirect'] / median['fs']:.2f}x time")
    for name, what, reference, target in (
        ("mirror s3", "hubd mirror into S3", "mirror fs", "none set"),
        ("s3 stream", "serve streamed from S3", "fs", "none set"),
        ("s3 redirect", "serve by presigned redirect", "fs", "none set"),
    ):
        record("s3", what, median[name], "s", reference, median[reference], target)


if __name__ == "__main__":
    sys.exit(main())
