"""`hubd audit --format spdx`: every element once under its own spdxId, whatever the repo order."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Result
from support.corpus import repo_files, seed

from hubd.audit.bom import spdx_problems
from hubd.config import load_settings
from hubd.context import Context

Hubd = Callable[..., Result]


def _seed_catalog(home: Path) -> dict[str, str]:
    """Adapters that sort before their base, and names that look alike once punctuation goes."""
    card: dict[str, Any] = {"license": "apache-2.0"}
    repos = {
        "zeta/base": repo_files(card),
        "acme/adapter": repo_files(card | {"base_model": "zeta/base"}, "an adapter"),
        "acme/adapter-2": repo_files(card | {"base_model": "zeta/base"}, "another adapter"),
        "a/b-c": repo_files(card, "one", {"x y.txt": b"1", "x-y.txt": b"2"}),
        "a-b/c": repo_files(card, "two"),
    }
    ctx = Context.open(load_settings())
    try:
        return {repo: seed(ctx, repo, files) for repo, files in repos.items()}
    finally:
        ctx.close()


def test_spdx_ids_are_unique_and_every_package_is_present(hubd: Hubd, home: Path) -> None:
    commits = _seed_catalog(home)
    result = hubd("audit", "--format", "spdx")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    graph = [e for e in doc["@graph"] if e["type"] != "CreationInfo"]
    counts = Counter(e["spdxId"] for e in graph)
    assert [i for i, n in counts.items() if n > 1] == []
    assert spdx_problems(doc) == []

    packages = {e["name"]: e for e in graph if e["type"] == "ai_AIPackage"}
    assert {n: p["software_packageVersion"] for n, p in packages.items()} == commits
    assert not [e for e in graph if e["type"] == "software_Package"]  # every base is audited
    document = next(e for e in graph if e["type"] == "SpdxDocument")
    assert sorted(document["rootElement"]) == sorted(p["spdxId"] for p in packages.values())
    assert sorted(document["element"]) == sorted(set(counts) - {document["spdxId"]})

    base = packages["zeta/base"]["spdxId"]
    for adapter in ("acme/adapter", "acme/adapter-2"):
        (parents,) = [
            e["to"]
            for e in graph
            if e["type"] == "Relationship"
            and e["from"] == packages[adapter]["spdxId"]
            and e["relationshipType"] == "descendantOf"
        ]
        assert parents == [base]


def test_the_check_catches_a_repeated_spdx_id(hubd: Hubd, home: Path) -> None:
    _seed_catalog(home)
    doc = json.loads(hubd("audit", "--format", "spdx").out)
    package = next(e for e in doc["@graph"] if e["type"] == "ai_AIPackage")
    doc["@graph"].append(dict(package))
    assert f"spdxId {package['spdxId']} is used by 2 elements" in spdx_problems(doc)
