"""Benchmark: `HfApi().upload_folder` of 1 GiB to a `hubd daemon` vs `hubd add` of it locally.

A generated folder (one safetensors file of random bytes, default 1 GiB, plus a config and a
card) is pushed with the stock huggingface_hub client (HF_HUB_DISABLE_XET=1: preupload, the LFS
batch API, a multipart upload of 16 MiB parts, the ndjson commit) to a real `hubd daemon`
process on 127.0.0.1, and copied into another fresh home with `hubd add` (hash, store, record in
one process). Both end with the same verified, signed revision. We report the seconds and MB/s
of each and the ratio (push time / local add time).

    .venv/bin/python bench/upload.py [--bytes N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

os.environ["HF_HUB_DISABLE_XET"] = "1"  # read by huggingface_hub at import

from huggingface_hub import HfApi
from report import record
from serve import BIN, ROOT, start_daemon, stop

REPO = "bench/upload"
CHUNK = 64 * 1024 * 1024


def generate(root: Path, size: int) -> None:
    root.mkdir(parents=True)
    with (root / "model.safetensors").open("wb") as out:
        left = size
        while left:
            out.write(os.urandom(min(CHUNK, left)))
            left -= min(CHUNK, left)
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# bench\n")


def hubd(home: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "hubd"), *args],
        env={**env, "HUBD_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: hubd {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024**3)
    args = parser.parse_args()
    work = ROOT / ".bench" / "upload"
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "out"
    generate(folder, args.bytes)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    total = sum(p.stat().st_size for p in folder.iterdir())

    remote_home = work / "remote" / "home"
    remote_home.mkdir(parents=True)
    created = hubd(remote_home, env, "tokens", "create", "--scope", "write", "--name", "bench")
    token = created.strip()
    daemon, url = start_daemon(remote_home, env)
    try:
        api = HfApi(endpoint=url, token=token)
        api.create_repo(REPO)
        started = time.monotonic()
        pushed = api.upload_folder(repo_id=REPO, folder_path=folder).oid
        push_seconds = time.monotonic() - started
    finally:
        stop(daemon)

    local_home = work / "local" / "home"
    local_home.mkdir(parents=True)
    started = time.monotonic()
    hubd(local_home, env, "add", str(folder), "--repo", REPO, "--json")
    add_seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)

    mb = total / 1e6
    print(f"bytes: {total}")
    print(f"upload_folder to hubd daemon: {push_seconds:.2f} s ({mb / push_seconds:.0f} MB/s)")
    print(f"  commit {pushed}")
    print(f"hubd add (local):             {add_seconds:.2f} s ({mb / add_seconds:.0f} MB/s)")
    print(f"ratio upload/add: {push_seconds / add_seconds:.2f}")
    record("upload", "upload_folder to a hubd daemon", push_seconds, "s", "hubd add (local)",
           add_seconds, "none set")  # fmt: skip


if __name__ == "__main__":
    main()
