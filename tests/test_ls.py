"""`hubd ls` a page at a time: keyset paging on the repo id, filters, the cursor in --json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Result
from test_schemas import validate

from hubd.catalog.db import open_catalog
from hubd.catalog.listing import repo_page
from hubd.catalog.revisions import CardRecord, FileRecord, RevisionRecord, get_repo, record_revision
from hubd.catalog.views import repo_summary

Hubd = Callable[..., Result]
START = datetime(2026, 1, 1, tzinfo=UTC)


def revision(repo: str, n: int, *, adapter: bool = False) -> RevisionRecord:
    return RevisionRecord(
        repo_id=repo,
        commit=f"{n:040x}",
        source_endpoint="http://hub",
        refs=["main"],
        files=[FileRecord("model.safetensors", 10, f"{n:064x}", None, True)],
        card=CardRecord(license="mit" if n % 2 else "apache-2.0"),
        is_adapter=adapter,
        base_model="org-0/model-00" if adapter else None,
        node="n1",
        client="hubd/test",
        fetched_at=START + timedelta(minutes=n),
    )


def is_adapter(repo: str) -> bool:
    return int(repo[-2:]) % 4 == 1


def fill(url: str) -> list[str]:
    """23 repos in three orgs, every fourth an adapter, some with two revisions; their ids."""
    factory = open_catalog(url)
    repos = [f"org-{i % 3}/model-{i:02d}" for i in range(23)]
    with factory.begin() as session:
        for i, repo in enumerate(repos):
            record_revision(session, revision(repo, i, adapter=is_adapter(repo)))
            if i % 4 == 0:
                later = replace(revision(repo, 100 + i), refs=["main", "v2"])
                record_revision(session, later)
    factory.kw["bind"].dispose()
    return sorted(repos)


def test_pages_cover_the_catalog_once_in_repo_order(catalog_url: str) -> None:
    repos = fill(catalog_url)
    factory = open_catalog(catalog_url)
    with factory() as session:
        everything = repo_page(session).repos
        assert [r["repo"] for r in everything] == repos
        shown = [repo_summary(get_repo(session, r)).model_dump(mode="json") for r in repos]
        assert everything == shown  # as `show`
        pages, after = [], None
        while True:
            page = repo_page(session, limit=7, after=after)
            pages.append(page.repos)
            if page.next is None:
                break
            assert page.next == page.repos[-1]["repo"]
            after = page.next
        assert [len(p) for p in pages] == [7, 7, 7, 2]
        assert [r for p in pages for r in p] == everything
        exact = repo_page(session, limit=23)  # a full last page says it is the last
        assert (len(exact.repos), exact.next) == (23, None)

        adapters = [r for r in repos if is_adapter(r)]
        page = repo_page(session, kind="adapter", limit=3)
        assert [(r["repo"], r["kind"]) for r in page.repos] == [
            (r, "adapter") for r in adapters[:3]
        ]
        rest = repo_page(session, kind="adapter", after=page.next).repos
        assert [r["repo"] for r in rest] == adapters[3:]
        org = repo_page(session, org="org-1")
        assert [r["repo"] for r in org.repos] == [r for r in repos if r.startswith("org-1/")]
        assert repo_page(session, org="org-1/model-01").repos == []  # an org, not a prefix
        assert repo_page(session, org="org-%").repos == []  # no LIKE wildcards
        assert repo_page(session, org="ORG-1").repos == []  # and case counts, on both backends
        assert repo_page(session, after=repos[-1]) == repo_page(session, limit=5, after="zzz")
    factory.kw["bind"].dispose()


def test_latest_revision_decides_the_summary(catalog_url: str) -> None:
    fill(catalog_url)
    factory = open_catalog(catalog_url)
    with factory() as session:
        (row,) = repo_page(session, limit=1, after="org-0/model-09").repos
    assert row["repo"] == "org-0/model-12"
    assert row["revisions"] == 2 and row["refs"] == {"main": f"{112:040x}", "v2": f"{112:040x}"}
    assert (
        row["license"] == "apache-2.0"
        and row["mirrored_at"] == (START + timedelta(minutes=112)).isoformat()
    )
    factory.kw["bind"].dispose()


def test_ls_cli_pages_with_a_cursor(hubd: Hubd, home: Path) -> None:
    repos = fill(f"sqlite:///{home / 'catalog.db'}")
    first = hubd("ls", "--limit", "10", "--json").json()
    validate("catalog-repo.schema.json", first)
    assert [r["repo"] for r in first["repos"]] == repos[:10] and first["next"] == repos[9]
    second = hubd("ls", "--limit", "10", "--after", first["next"], "--json").json()
    assert [r["repo"] for r in second["repos"]] == repos[10:20]
    last = hubd("ls", "--limit", "10", "--after", second["next"], "--json").json()
    assert [r["repo"] for r in last["repos"]] == repos[20:] and last["next"] is None
    assert len(hubd("ls", "--json").json()["repos"]) == 23  # the default page is 100
    assert len(hubd("ls", "--limit", "0", "--json").json()["repos"]) == 23  # 0: all
    kinds = hubd("ls", "--kind", "model", "--org", "org-2", "--json").json()["repos"]
    assert [(r["repo"], r["kind"]) for r in kinds] == [
        (r, "model") for r in repos if r.startswith("org-2/") and not is_adapter(r)
    ]

    table = hubd("ls", "--limit", "2")
    assert table.code == 0 and repos[1] in table.out and repos[2] not in table.out
    assert f"hubd ls --after {repos[1]}" in table.err


@pytest.mark.parametrize("args", [["--limit", "-1"], ["--kind", "dataset"], ["--limit", "x"]])
def test_ls_refuses_bad_options(hubd: Hubd, args: list[str]) -> None:
    result = hubd("ls", *args)
    assert result.code == 2 and result.out == ""
