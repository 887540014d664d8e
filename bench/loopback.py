"""The loopback Hugging Face-compatible server the benchmarks run against (own process)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_hub(work: Path, repo: str, repo_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Serve ``repo_dir`` as ``repo``; returns the process and its endpoint once it listens."""
    port_file = work / "endpoint"
    port_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support",
            "serve",
            "--repo",
            f"{repo}={repo_dir}",
            "--port-file",
            str(port_file),
        ],
        cwd=ROOT,  # tests.support lives outside the wheel, beside the benches
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        if port_file.exists() and port_file.read_text().strip():
            return server, port_file.read_text().strip()
        time.sleep(0.1)
    server.kill()
    raise SystemExit("bench: the loopback server did not start")
