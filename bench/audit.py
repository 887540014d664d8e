"""Benchmark: `hubd audit --format json` over a catalog of 10,000 revisions (target: under 5 s).

A temporary SQLite catalog is filled with bulk inserts: repos with several revisions each, cards
of every license class from the test corpus, adapters, fine-tunes and merges of other repos in
the catalog, bases that are not in it, and files pointing at a pool of real blobs in the store
(safetensors, LICENSE texts, GGUF, pickles) so that scans and LICENSE reading run as they would.
The audit then runs in-process as `hubd audit --format json -o FILE`; it prints the seconds and
the ratio to the 5 s target. Then the worst case for the policy's `signed` condition: every
revision signed with the node key and a `signed = false` rule, so that every signature is read
and verified.

    .venv/bin/python bench/audit.py [--revisions N] [--per-repo K]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support: the fakes and generators, outside the wheel

from hubd.catalog.models import Blob, File, ModelCard, Ref, Repo, Revision
from hubd.catalog.revisions import revisions_with_files
from hubd.config import Settings
from hubd.context import Context
from hubd.model.card import card_record
from hubd.ops.sign import sign_files
from hubd.trust.keys import node_key
from tests.support.corpus import cases, put_blob, weights
from tests.support.modelgen import tiny_llama_gguf

sys.path.insert(0, str(ROOT / "bench"))
from report import record

TARGET = 5.0
SIGNED_TARGET = 2.5  # issue 18: 10,000 signed revisions, every signature deciding


def blob_pool(ctx: Context, size: int) -> dict[str, list[tuple[str, int, str]]]:
    """Real blobs by file name: (path, size, sha256) choices for each kind of file."""
    pool: dict[str, list[tuple[str, int, str]]] = {}
    for case in cases():
        for path, data in case.files.items():
            if path != "README.md":
                pool.setdefault(path, []).append((path, len(data), put_blob(ctx, path, data)))
    for i in range(size):  # distinct weights, so the scans have work to do
        data = weights(1000 + i)
        pool["model.safetensors"].append(("model.safetensors", len(data), put_blob(ctx, "w", data)))
    gguf = tiny_llama_gguf(seed=7, license="llama3.1")
    pool["model.gguf"].append(("model.gguf", len(gguf), put_blob(ctx, "model.gguf", gguf)))
    return pool


def fill(ctx: Context, revisions: int, per_repo: int, pool_size: int) -> int:
    """Bulk-insert ``revisions`` revisions; returns the number of file rows."""
    corpus = cases()
    cards = [card_record(c.files["README.md"].decode(), {}, None) for c in corpus]
    pool = blob_pool(ctx, pool_size)
    repos_n = revisions // per_repo
    start = datetime(2025, 1, 1, tzinfo=UTC)
    repos: list[dict[str, Any]] = []
    revs: list[dict[str, Any]] = []
    card_rows: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    blobs: dict[str, int] = {}
    for r in range(repos_n):
        template = r % len(corpus)
        repo_id = f"bench-{r % 97}/model-{r}"
        card = cards[template]
        relation = None
        bases: list[str] = []
        if r >= 100 and r % 5 == 1:  # an adapter of an earlier repo
            bases, relation = [f"bench-{(r - 7) % 97}/model-{r - 7}"], "adapter"
        elif r >= 100 and r % 5 == 2:  # a merge of two earlier repos
            bases = [f"bench-{(r - 3) % 97}/model-{r - 3}", f"bench-{(r - 11) % 97}/model-{r - 11}"]
            relation = "merge"
        elif r % 50 == 3:  # a fine-tune of a model hubd never mirrored
            bases, relation = [f"elsewhere/base-{r}"], "finetune"
        repos.append(
            {
                "id": r + 1,
                "repo_id": repo_id,
                "kind": "adapter" if relation == "adapter" else "model",
            }
        )
        for k in range(per_repo):
            pk = r * per_repo + k + 1
            commit = hashlib.sha1(f"{repo_id}@{k}".encode(), usedforsecurity=False).hexdigest()
            revs.append(
                {
                    "id": pk,
                    "repo_pk": r + 1,
                    "commit": commit,
                    "state": "verified",
                    "mirrored_at": start + timedelta(minutes=pk),
                    "source_endpoint": "https://huggingface.co",
                    "is_adapter": relation == "adapter",
                    "base_model": bases[0] if bases else None,
                }
            )
            card_rows.append(
                {
                    "revision_pk": pk,
                    "license": card.license,
                    "license_name": card.license_name,
                    "license_link": card.license_link,
                    "base_model": bases or card.base_model,
                    "base_model_relation": relation or card.base_model_relation,
                    "datasets": card.datasets,
                    "tags": card.tags,
                    "pipeline_tag": card.pipeline_tag,
                    "language": card.language,
                    "gated": None,
                    "data": card.data,
                    "text": card.text,
                }
            )
            chosen = [("README.md", 2000, hashlib.sha256(card.text.encode()).hexdigest())]
            for name, choices in pool.items():
                if name in corpus[template].files:
                    chosen.append(choices[(pk + len(name)) % len(choices)])
            for path, size, sha256 in chosen:
                blobs[sha256] = size
                files.append(
                    {"revision_pk": pk, "path": path, "size": size, "sha256": sha256, "lfs": True}
                )
        refs.append({"repo_pk": r + 1, "name": "main", "commit": revs[-1]["commit"]})
    with ctx.catalog.begin() as session:
        session.execute(insert(Repo), repos)
        session.execute(insert(Revision), revs)
        session.execute(insert(ModelCard), card_rows)
        session.execute(insert(Blob), [{"sha256": s, "size": n} for s, n in blobs.items()])
        session.execute(insert(File), files)
        session.execute(insert(Ref), refs)
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=10_000)
    parser.add_argument("--per-repo", type=int, default=4)
    parser.add_argument("--pool", type=int, default=200, help="distinct weight blobs to scan")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubd-bench-audit-") as tmp:
        home = Path(tmp)
        os.environ["HUBD_HOME"] = str(home)
        ctx = Context.open(Settings(home=home).resolved())
        started = time.perf_counter()
        nfiles = fill(ctx, args.revisions, args.per_repo, args.pool)
        ctx.close()
        print(
            f"catalog: {args.revisions} revisions, {nfiles} files, "
            f"filled in {time.perf_counter() - started:.1f} s"
        )
        from hubd.cli.main import main as hubd

        out = home / "audit.json"
        started = time.perf_counter()
        code = hubd(["audit", "--format", "json", "-o", str(out)])
        seconds = time.perf_counter() - started
        if code not in (0, 1):
            sys.exit(f"hubd audit failed with exit code {code}")
        print(
            f"hubd audit --format json: {seconds:.2f} s for {args.revisions} revisions "
            f"({out.stat().st_size / 2**20:.0f} MiB of JSON); ratio to the {TARGET:.0f} s target: "
            f"{seconds / TARGET:.2f}x (target <= 1.0x)"
        )
        record("audit", f"hubd audit, {args.revisions} revisions", seconds, "s", "target",
               TARGET, "<= 1.0")  # fmt: skip

        # The worst case for the `signed` condition: every revision signed, and a rule that
        # makes every signature decide, so each one is read and verified.
        ctx = Context.open(Settings(home=home).resolved())
        started = time.perf_counter()
        signed = sign_all(ctx)
        ctx.close()
        print(
            f"signed {signed} revisions with the node key in {time.perf_counter() - started:.1f} s"
        )
        policy = home / "policy.toml"
        policy.write_text('[[rules]]\nsigned = false\naction = "review"\n')
        # First every signature is verified (and its verdict kept), then the verdicts are read.
        for run in ("first, verifying", "again, from the verdicts"):
            started = time.perf_counter()
            code = hubd(["audit", "--format", "json", "-o", str(out), "--policy", str(policy)])
            seconds = time.perf_counter() - started
            if code not in (0, 1):
                sys.exit(f"hubd audit --policy failed with exit code {code}")
            print(
                f"hubd audit with `signed = false` deciding every revision, {run}: "
                f"{seconds:.2f} s; ratio to the {SIGNED_TARGET} s target: "
                f"{seconds / SIGNED_TARGET:.2f}x (target <= 1.0x)"
            )
            record("audit", f"hubd audit, every signature deciding, {run}", seconds, "s",
                   "target", SIGNED_TARGET, "<= 1.0")  # fmt: skip


def sign_all(ctx: Context) -> int:
    """Sign every revision's catalog digests with the node key, as a mirror does."""
    key = node_key(ctx)
    with ctx.catalog() as session:
        revisions = [
            (r.repo.repo_id, r.commit, {f.path: f.sha256 for f in r.files})
            for r in revisions_with_files(session)
        ]
    for repo_id, commit, files in revisions:
        sign_files(ctx, repo_id, commit, files, key)
    return len(revisions)


if __name__ == "__main__":
    main()
