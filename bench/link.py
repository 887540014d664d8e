"""Benchmark: one large file from a CDN that caps every connection, hubd vs snapshot_download.

The Hub's CDN serves each stream at a capped rate, so a client is as fast as the streams it
keeps open. Here a real nginx (`limit_rate`, per request, `sendfile on`) plays that CDN for one
generated file (default 256 MiB at 16 MB/s a connection); the loopback Hugging Face server
answers the API and redirects the file to nginx, as huggingface.co redirects LFS files. We time
`hubd mirror` (adaptive streams, every byte through sha256 before the rename) and
`snapshot_download` (one stream) of the same repo, alternating, each into a fresh home, and
report the ratio (target <= 0.15; 16 streams would give 0.06) and hubd's peak RSS (target
<= 200 MB). `hubd verify` re-checks the stored blob after the last round.

    .venv/bin/python bench/link.py [--bytes N] [--rate 16m] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from loopback import client_env, snapshot_download_code, start_cdn, start_hub
from mirror import BIN, Run, timed
from report import record
from serve import stop

REPO = "bench/capped"
FILE = "model.safetensors"
RSS_TARGET_MB = 200


def generate(repo_dir: Path, total: int) -> None:
    """A repo of one ``total``-byte file and a README."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# capped link bench\n")
    with (repo_dir / FILE).open("wb") as f:
        left = total
        while left:
            left -= f.write(os.urandom(min(left, 16 * 2**20)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=256 * 2**20)
    parser.add_argument("--rate", default="16m", help="nginx limit_rate per connection")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hubd-link-") as tmp:
        work = Path(tmp)
        repo_dir = work / "repo"
        generate(repo_dir, args.bytes)
        nginx, cdn = start_cdn(work, [repo_dir / FILE], f"limit_rate {args.rate};")
        server = None
        try:
            server, endpoint = start_hub(work, REPO, repo_dir, cdn=cdn)
            env = client_env(endpoint, work)
            hubd_home, hf_cache = work / "hubd-home", work / "hf-cache"
            download = snapshot_download_code(REPO, hf_cache)
            runs: dict[str, list[Run]] = {"hubd mirror": [], "snapshot_download": []}
            for _ in range(args.rounds):
                shutil.rmtree(hubd_home, ignore_errors=True)
                hubd_env = {**env, "HUBD_HOME": str(hubd_home)}
                subprocess.run(["sync"], check=True)  # neither pays for the other's writeback
                runs["hubd mirror"].append(
                    timed([str(BIN / "hubd"), "mirror", REPO, "--quiet"], hubd_env)
                )
                shutil.rmtree(hf_cache, ignore_errors=True)
                subprocess.run(["sync"], check=True)
                runs["snapshot_download"].append(timed([sys.executable, "-c", download], env))
            verify = subprocess.run(
                [str(BIN / "hubd"), "verify", "--json"],
                env={**env, "HUBD_HOME": str(hubd_home)},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if verify.returncode != 0:
                raise SystemExit(f"bench: hubd verify failed: {verify.stdout}{verify.stderr}")
        finally:
            stop(server)
            stop(nginx)

    mib = args.bytes / 2**20
    print(f"one {mib:.0f} MiB file, nginx limit_rate {args.rate} per connection, median of "
          f"{args.rounds}")  # fmt: skip
    print(f"{'client':<20} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    medians = {}
    for name, got in runs.items():
        medians[name] = statistics.median(r.seconds for r in got)
        rss = max(r.peak_rss_mb for r in got)
        print(
            f"{name:<20} {medians[name]:8.2f} {args.bytes / 1e6 / medians[name]:8.0f} {rss:12.0f}"
        )
    ratio = medians["hubd mirror"] / medians["snapshot_download"]
    peak = max(r.peak_rss_mb for r in runs["hubd mirror"])
    print(f"ratio hubd/snapshot_download: {ratio:.3f}x time (target <= 0.15); "
          f"hubd peak RSS {peak:.0f} MB (target <= {RSS_TARGET_MB}); hubd verify: ok")  # fmt: skip
    record("link", f"hubd mirror, {mib:.0f} MiB, nginx limit_rate {args.rate}",
           medians["hubd mirror"], "s", "snapshot_download", medians["snapshot_download"],
           "<= 0.15")  # fmt: skip
    record("link", "hubd mirror peak RSS, capped link", peak, "MB", "the 200 MB bound",
           RSS_TARGET_MB, "<= 1.0")  # fmt: skip


if __name__ == "__main__":
    main()
