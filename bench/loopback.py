"""The loopback Hugging Face-compatible server the benchmarks run against (own process)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def client_env(endpoint: str, work: Path) -> dict[str, str]:
    """The environment each client of a bench runs in: this loopback Hub, no telemetry or bars,
    none of the caller's own HF_* or HUBD_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HOME=str(work / "hf-home"),
    )
    return env


def snapshot_download_code(repo: str, cache: Path) -> str:
    """``python -c`` code running huggingface_hub's own snapshot_download into ``cache``."""
    return (
        "from huggingface_hub import snapshot_download; "
        f"snapshot_download({repo!r}, cache_dir={str(cache)!r})"
    )


def start_cdn(
    work: Path, files: list[Path], extra: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """An nginx serving ``files`` at ``/cdn/<sha256>``, as the Hub's CDN serves LFS files (pass
    its URL to :func:`start_hub`); ``extra`` are directives such as ``limit_rate 16m;``."""
    from serve import start_nginx

    root = work / "cdn-root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "cdn").mkdir(parents=True)
    for path in files:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(16 * 2**20):
                digest.update(block)
        (root / "cdn" / digest.hexdigest()).symlink_to(path.resolve())
    nginx, port = start_nginx(work, root, extra)
    return nginx, f"http://127.0.0.1:{port}"


def start_hub(
    work: Path, repo: str, repo_dir: Path, cdn: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Serve ``repo_dir`` as ``repo``; returns the process and its endpoint once it listens.
    With ``cdn``, LFS files are redirected to ``{cdn}/cdn/<sha256>`` (an nginx of the bench)."""
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
            *(["--cdn", cdn] if cdn else []),
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
