"""Benchmark: the air-gap bundle, `hubd export -o` and `hubd import`, next to GNU tar.

The generated repo of bench/mirror.py (default 1 GiB) is mirrored once from the loopback server
into a source home. Then, alternating, several rounds: `hubd export -o` (re-hashes every blob as
it writes) against `tar -cf` of the same blob files, and `hubd import` into an empty home
(stages, hashes, checks signatures and policy, records) against `tar -xf` into an empty
directory followed by `sha256sum` of what it extracted. Median wall time and peak RSS.

    .venv/bin/python bench/bundle.py [--bytes N] [--shards K] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys

from loopback import start_hub
from mirror import BIN, REPO, ROOT, Run, generate, timed
from report import record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=1024**3)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = ROOT / ".bench"
    work.mkdir(exist_ok=True)
    repo_dir = work / "repo"
    generate(repo_dir, args.bytes, args.shards)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUBD_"))}
    source, far = work / "bundle-source", work / "bundle-far"
    bundle, reference = work / "bundle.tar", work / "reference.tar"
    untarred = work / "bundle-untarred"
    shutil.rmtree(source, ignore_errors=True)
    server, endpoint = start_hub(work, REPO, repo_dir)
    try:
        mirrored = {**env, "HUBD_HOME": str(source), "HF_ENDPOINT": endpoint}
        subprocess.run([str(BIN / "hubd"), "mirror", REPO, "--quiet"], env=mirrored, check=True)
    finally:
        server.terminate()
        server.wait()
    blob_root = source / "store" / "blobs" / "sha256"
    blobs = sorted(str(p.relative_to(blob_root)) for p in blob_root.rglob("*") if p.is_file())
    total = sum((blob_root / b).stat().st_size for b in blobs)
    hubd = [str(BIN / "hubd")]
    results: dict[str, list[Run]] = {
        "hubd export -o": [],
        "tar -cf": [],
        "hubd import": [],
        "tar -xf + sha256sum": [],
    }
    try:
        for _ in range(args.rounds):
            bundle.unlink(missing_ok=True)
            reference.unlink(missing_ok=True)
            subprocess.run(["sync"], check=True)
            results["hubd export -o"].append(
                timed([*hubd, "export", REPO, "-o", str(bundle)], {**env, "HUBD_HOME": str(source)})
            )
            results["tar -cf"].append(
                timed(["tar", "-cf", str(reference), "-C", str(blob_root), *blobs], env)
            )
            shutil.rmtree(far, ignore_errors=True)
            shutil.rmtree(untarred, ignore_errors=True)
            untarred.mkdir()
            subprocess.run(["sync"], check=True)
            results["hubd import"].append(
                timed([*hubd, "import", str(bundle)], {**env, "HUBD_HOME": str(far)})
            )
            extract = (
                f"tar -xf {reference} -C {untarred} && cd {untarred} && "
                f"sha256sum {' '.join(blobs)} > /dev/null"
            )
            results["tar -xf + sha256sum"].append(timed(["bash", "-c", extract], env))
    finally:
        for path in (bundle, reference):
            path.unlink(missing_ok=True)
        shutil.rmtree(untarred, ignore_errors=True)

    print(f"bundle of {total / 2**20:.0f} MiB in {len(blobs)} blobs; {args.rounds} rounds, median")
    print(f"{'command':<22} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    medians = {}
    for name, runs in results.items():
        seconds = statistics.median(r.seconds for r in runs)
        medians[name] = seconds
        rss = max(r.peak_rss_mb for r in runs)
        print(f"{name:<22} {seconds:8.2f} {total / 1e6 / seconds:8.0f} {rss:12.0f}")
    print(
        f"ratio hubd export / tar -cf: {medians['hubd export -o'] / medians['tar -cf']:.2f}x "
        "time (hubd re-hashes every blob and signs the index)"
    )
    print(
        "ratio hubd import / (tar -xf + sha256sum): "
        f"{medians['hubd import'] / medians['tar -xf + sha256sum']:.2f}x time "
        "(hubd also checks signatures and policy and records the catalog)"
    )
    record("bundle", "hubd export -o", medians["hubd export -o"], "s", "tar -cf",
           medians["tar -cf"], "none set")  # fmt: skip
    record("bundle", "hubd import", medians["hubd import"], "s", "tar -xf + sha256sum",
           medians["tar -xf + sha256sum"], "none set")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
