"""Benchmark: the catalog at organisation scale, 100,000 revisions and 1,000,000 files.

Fills a SQLite catalog and a PostgreSQL one (a new database on the server at --pg-url, default
$HUBD_TEST_PG_URL; `make bench` runs this through tests/pg.sh, which starts a throwaway server)
with bulk inserts (SQLAlchemy Core executemany; COPY for PostgreSQL), then times what users ask of
them: `hubd ls` (repo_page: its first page of 100 repos, a page from the middle, a page of
adapters and one organisation's repos), `hubd show` (get_repo + repo_detail), the revisions
under a license (model_cards.license) and those built on a base model (revisions.base_model).
Each figure is the median of --runs runs, against a 100 ms target; listing every repo at once
(`hubd ls --limit 0`) is printed for comparison, outside the target.
The queries run again with the indexes proposed for the next migration (RECOMMENDED), created
ad hoc, to show what they buy.

    tests/pg.sh .venv/bin/python bench/catalog.py [--revisions N] [--per-repo K] [--files F]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from report import record
from sqlalchemy import Engine, Table, create_engine, insert, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from hubd.catalog.db import open_catalog
from hubd.catalog.listing import repo_page
from hubd.catalog.models import Base, ModelCard, Repo, Revision
from hubd.catalog.revisions import get_repo
from hubd.catalog.views import repo_detail

TARGET_MS = 100.0
LICENSES = ["apache-2.0"] * 8 + ["mit"] * 5 + ["llama3.1", "gemma", "cc-by-nc-4.0", "other"]
SEARCHED_LICENSE = "gemma"  # about 1 revision in 17
BASES = 200  # repos that others name as their base model
CHUNK = 5_000  # revisions per insert batch
CARD_TEXT = "# {repo}\n\n" + "A model card paragraph: usage, limitations, training data. " * 25
# `hubd ls` finds each repo's latest revision (repo_pk, mirrored_at), then its license without
# reading the wide card rows (revision_pk, license).
RECOMMENDED = [
    "CREATE INDEX ix_revisions_repo_pk_mirrored_at ON revisions (repo_pk, mirrored_at)",
    "CREATE INDEX ix_model_cards_revision_pk_license ON model_cards (revision_pk, license)",
]


def rows(revisions: int, per_repo: int, files: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The catalog's rows, table by table, in batches of CHUNK revisions (deterministic)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    seen_blobs: set[str] = set()
    for first in range(0, revisions, CHUNK):
        batch: dict[str, list[dict[str, Any]]] = {
            name: [] for name in ("repos", "revisions", "model_cards", "blobs", "files", "refs")
        }
        batch["provenance"] = []
        batch["revision_tags"] = []
        for pk in range(first + 1, min(first + CHUNK, revisions) + 1):
            r, k = divmod(pk - 1, per_repo)
            repo_id = f"org-{r % 500}/model-{r}"
            if k == 0:
                kind = "adapter" if r % 7 == 3 else "model"
                batch["repos"].append(
                    {"id": r + 1, "repo_id": repo_id, "kind": kind, "created_at": start}
                )
            commit = hashlib.sha1(f"{repo_id}@{k}".encode(), usedforsecurity=False).hexdigest()
            when = start + timedelta(seconds=pk)
            base = f"org-{(r * 31) % BASES}/model-{(r * 31) % BASES}" if r >= BASES else None
            batch["revisions"].append(
                {
                    "id": pk,
                    "repo_pk": r + 1,
                    "commit": commit,
                    "state": "verified",
                    "mirrored_at": when,
                    "source_endpoint": "https://huggingface.co",
                    "is_adapter": r % 7 == 3,
                    "base_model": base,
                }
            )
            batch["model_cards"].append(
                {
                    "revision_pk": pk,
                    "license": LICENSES[r % len(LICENSES)],
                    "license_name": None,
                    "license_link": None,
                    "base_model": [base] if base else [],
                    "base_model_relation": "adapter" if r % 7 == 3 else None,
                    "datasets": ["org/data"],
                    "tags": ["text-generation", "safetensors", f"topic-{r % 50}"],
                    "pipeline_tag": "text-generation",
                    "library_name": "transformers",
                    "language": ["en"],
                    "gated": None,
                    "data": {"license": LICENSES[r % len(LICENSES)], "tags": ["safetensors"]},
                    "text": CARD_TEXT.format(repo=repo_id),
                }
            )
            card = ModelCard(**batch["model_cards"][-1])
            batch["revision_tags"] += [
                {"tag": t, "revision_pk": pk, "position": i}
                for i, t in enumerate(card.tags_for_hub())
            ]
            batch["provenance"].append(
                {
                    "id": pk,
                    "revision_pk": pk,
                    "hop": 0,
                    "source_url": f"https://huggingface.co/{repo_id}",
                    "commit": commit,
                    "node": "bench",
                    "fetched_at": when,
                    "client": "hubd/bench",
                }
            )
            for f in range(files):
                # A file changes every third revision, so blobs are shared as in real repos.
                sha = hashlib.sha256(f"{repo_id}/{f}/{k // 3}".encode()).hexdigest()
                size = 1_000 + f * 4096
                if sha not in seen_blobs:
                    seen_blobs.add(sha)
                    batch["blobs"].append({"sha256": sha, "size": size, "created_at": when})
                batch["files"].append(
                    {
                        "id": (pk - 1) * files + f + 1,
                        "revision_pk": pk,
                        "path": f"model-{f:05d}-of-{files:05d}.safetensors",
                        "size": size,
                        "sha256": sha,
                        "git_oid": None,
                        "lfs": True,
                    }
                )
            if k == per_repo - 1 or pk == revisions:
                batch["refs"].append(
                    {
                        "id": r + 1,
                        "repo_pk": r + 1,
                        "name": "main",
                        "commit": commit,
                        "updated_at": when,
                    }
                )
        yield batch


ORDER = [
    "repos",
    "revisions",
    "model_cards",
    "revision_tags",
    "provenance",
    "blobs",
    "files",
    "refs",
]


def fill_core(engine: Engine, batches: Iterator[dict[str, list[dict[str, Any]]]]) -> None:
    with engine.begin() as conn:
        for batch in batches:
            for name in ORDER:
                if batch[name]:
                    conn.execute(insert(Base.metadata.tables[name]), batch[name])


def _copy_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def fill_copy(engine: Engine, batches: Iterator[dict[str, list[dict[str, Any]]]]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        for batch in batches:
            for name in ORDER:
                if not batch[name]:
                    continue
                table: Table = Base.metadata.tables[name]
                columns = list(batch[name][0])
                assert set(columns) <= set(table.columns.keys())
                with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in batch[name]:
                        copy.write_row([_copy_value(row[c]) for c in columns])
        for name in ORDER:  # the ids were given: move the sequences past them
            if name not in ("model_cards", "revision_tags", "blobs"):
                cursor.execute(  # S608: name is one of ORDER, our own table names
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                    f"(SELECT coalesce(max(id), 1) FROM {name}))"
                )
        raw.commit()
    finally:
        raw.close()
    settle(engine)


def settle(engine: Engine) -> None:
    """Statistics and visibility map as autovacuum leaves them soon after a bulk load."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))


def median_ms(func: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


Figures = dict[str, tuple[float, str, bool]]  # name -> (median ms, answer, held to the target)


def measure(factory: sessionmaker[Session], runs: int, shown: str) -> Figures:
    base = f"org-{31 % BASES}/model-{31 % BASES}"

    def ls(**options: Any) -> Callable[[], int]:
        def page() -> int:
            with factory() as session:
                return len(repo_page(session, **options).repos)

        return page

    def show() -> int:
        with factory() as session:
            return len(repo_detail(get_repo(session, shown)).revisions)

    def by_license() -> int:
        with factory() as session:
            stmt = (
                select(Repo.repo_id, Revision.commit)
                .join(Revision, Revision.repo_pk == Repo.id)
                .join(ModelCard, ModelCard.revision_pk == Revision.id)
                .where(ModelCard.license == SEARCHED_LICENSE)
                .order_by(Repo.repo_id, Revision.mirrored_at)
            )
            return len(session.execute(stmt).all())

    def by_base() -> int:
        with factory() as session:
            stmt = (
                select(Repo.repo_id, Revision.commit)
                .join(Revision, Revision.repo_pk == Repo.id)
                .where(Revision.base_model == base)
                .order_by(Repo.repo_id, Revision.mirrored_at)
            )
            return len(session.execute(stmt).all())

    figures = {}
    for name, func, unit, targeted in [
        ("hubd ls", ls(limit=100), "repos", True),
        (f"hubd ls --after {shown}", ls(limit=100, after=shown), "repos", True),
        ("hubd ls --kind adapter", ls(limit=100, kind="adapter"), "repos", True),
        ("hubd ls --org org-250", ls(limit=100, org="org-250"), "repos", True),
        ("hubd ls --limit 0", ls(), "repos", False),
        (f"hubd show {shown}", show, "revisions", True),
        (f"license = {SEARCHED_LICENSE}", by_license, "revisions", True),
        (f"base_model = {base}", by_base, "revisions", True),
    ]:
        ms, count = median_ms(func, runs)
        figures[name] = (ms, f"{count} {unit}", targeted)
    return figures


def report(backend: str, figures: Figures) -> bool:
    ok = True
    for name, (ms, answer, targeted) in figures.items():
        verdict = ("ok" if ms < TARGET_MS else "SLOW") if targeted else "-"
        ok &= ms < TARGET_MS or not targeted
        ratio = ms / TARGET_MS
        print(f"  {backend:<13} {name:<36} {ms:8.1f} ms  {ratio:5.2f}x  {verdict:<4}  ({answer})")
        if targeted:
            record("catalog", f"{backend}: {name}", ms, "ms", "target", TARGET_MS, "<= 1.0")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=100_000)
    parser.add_argument("--per-repo", type=int, default=10, help="revisions per repo")
    parser.add_argument("--files", type=int, default=10, help="files per revision")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", default=os.environ.get("HUBD_TEST_PG_URL"))
    args = parser.parse_args()
    if not args.pg_url:
        sys.exit("bench/catalog.py: no PostgreSQL: run it through tests/pg.sh or pass --pg-url")
    middle = args.revisions // args.per_repo // 2
    shown = f"org-{middle % 500}/model-{middle}"
    print(
        f"catalog: {args.revisions} revisions ({args.per_repo} per repo), "
        f"{args.revisions * args.files} files; median of {args.runs} runs, "
        f"target < {TARGET_MS:.0f} ms (ratio <= 1.0x)"
    )
    server = make_url(args.pg_url)
    database = f"hubd_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    ok = indexed = True
    try:
        with tempfile.TemporaryDirectory(prefix="hubd-bench-catalog-") as tmp:
            urls = {
                "sqlite": f"sqlite:///{Path(tmp) / 'catalog.db'}",
                "postgresql": server.set(database=database).render_as_string(hide_password=False),
            }
            for backend, url in urls.items():
                factory = open_catalog(url)
                engine = factory.kw["bind"]
                started = time.perf_counter()
                batches = rows(args.revisions, args.per_repo, args.files)
                (fill_copy if backend == "postgresql" else fill_core)(engine, batches)
                print(f"  {backend:<13} filled in {time.perf_counter() - started:.1f} s")
                ok &= report(backend, measure(factory, args.runs, shown))
                with engine.begin() as conn:
                    for ddl in RECOMMENDED:
                        conn.execute(text(ddl))
                settle(engine)
                indexed = report(f"{backend}+ix", measure(factory, args.runs, shown))
                engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        admin.dispose()
    for label, passed in (("as migrated", ok), ("with RECOMMENDED", indexed)):
        print(f"{label}: {'all under the target' if passed else 'some queries over the target'}")


if __name__ == "__main__":
    main()
