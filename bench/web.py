"""Benchmark: the web catalog at 100,000 repos (target: every page under 100 ms of server time,
a page under 200 KB with its stylesheet and script).

The catalog is filled as bench/audit.py fills it (every license class of the test corpus,
adapters and merges, real blobs to scan), one revision per repo by default, and served by the
daemon's app on loopback. The first page waits for the index (the whole-catalog audit behind the
facets, built once per catalog change, in the background after that): its time is printed
apart. Then each page is fetched --runs times over HTTP on loopback and the median printed:
the first catalog page, a search, a facet, a page from the middle (keyset cursor), newest
first, a model page, the audit dashboard and a JSON twin.

    .venv/bin/python bench/web.py [--revisions N] [--per-repo K] [--runs R]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench.audit's filler and tests.support's corpus

from bench.audit import fill
from hubd.config import Settings
from hubd.context import Context
from hubd.server.web.render import ASSETS
from tests.support.serving import serving

sys.path.insert(0, str(ROOT / "bench"))
from report import record

TARGET_MS, TARGET_KB = 100.0, 200.0


def get(url: str, path: str) -> bytes:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=600)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            sys.exit(f"bench/web.py: GET {path}: {answer.status} {body[:300]!r}")
        return body
    finally:
        conn.close()


def html_of(twin: str) -> str:
    """The page a JSON twin's link stands for."""
    parts = urlsplit(twin)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "format"]
    return f"{parts.path}?{urlencode(query)}"


def median_ms(url: str, path: str, runs: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        size = len(get(url, path))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=100_000)
    parser.add_argument("--per-repo", type=int, default=1)
    parser.add_argument("--pool", type=int, default=200, help="distinct weight blobs to scan")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubd-bench-web-") as tmp:
        home = Path(tmp)
        os.environ["HUBD_HOME"] = str(home)
        ctx = Context.open(Settings(home=home).resolved())
        started = time.perf_counter()
        nfiles = fill(ctx, args.revisions, args.per_repo, args.pool)
        print(
            f"catalog: {args.revisions} revisions, {args.revisions // args.per_repo} repos, "
            f"{nfiles} files, filled in {time.perf_counter() - started:.1f} s"
        )
        with serving(ctx) as url:
            started = time.perf_counter()
            first = json.loads(get(url, "/ui/?format=json"))
            print(
                f"index (audit of every revision, once per catalog change): "
                f"{time.perf_counter() - started:.1f} s for {first['total']} repos"
            )
            middle = json.loads(get(url, "/ui/?format=json&limit=200"))
            for _ in range(len(first["repos"]) and 100):  # walk a hundred pages in
                following = middle["next"]
                if following is None:
                    break
                middle = json.loads(get(url, following))
            repo = first["repos"][0]["repo"]
            adapters = "/ui/?kind=adapter"
            pages = {
                "catalog, first page": "/ui/",
                "search 'model-1'": "/ui/?q=model-1",
                "facet kind=adapter": adapters,
                "facet class + verdict": "/ui/?class=non-commercial&verdict=open-weight",
                "page ~20,000 repos in": html_of(middle["next"] or "/ui/?format=json"),
                "newest first": "/ui/?sort=mirrored",
                "largest first": "/ui/?sort=size",
                "catalog JSON twin": "/ui/?format=json",
                "model page": f"/ui/models/{repo}",
                "audit dashboard": "/ui/audit",
            }
            assets = sum(len(a.body) for name, a in ASSETS.items() if name != "favicon.svg")
            print(
                f"median of {args.runs} runs over HTTP on loopback; target < {TARGET_MS:.0f} ms, "
                f"page with its CSS and JS < {TARGET_KB:.0f} KB (assets {assets / 1024:.1f} KB)"
            )
            ok = True
            for label, path in pages.items():
                ms, size = median_ms(url, path, args.runs)
                weight = (size + assets) / 1024
                fine = ms < TARGET_MS and weight < TARGET_KB
                ok &= fine
                record("web", f"{label}: server time", ms, "ms", "target", TARGET_MS, "<= 1.0")
                record("web", f"{label}: page weight", weight, "KB", "target", TARGET_KB, "<= 1.0")
                print(
                    f"  {label:<24} {ms:7.1f} ms  {weight:6.1f} KB  ratio {ms / TARGET_MS:.2f}x"
                    f"{'' if fine else '  OVER'}"
                )
        ctx.close()
    if not ok:
        sys.exit("bench/web.py: a page is over its target")


if __name__ == "__main__":
    main()
