"""The catalog on both backends: migrations, recording, the queries behind `hubd ls/show`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import Result

from hubd.catalog.db import (
    HEAD,
    MIGRATIONS,
    create_catalog_engine,
    create_fresh,
    current_revision,
    open_catalog,
    upgrade,
)
from hubd.catalog.listing import repo_summaries
from hubd.catalog.models import Base
from hubd.catalog.revisions import (
    CardRecord,
    FileRecord,
    RevisionRecord,
    find_revision,
    get_repo,
    record_revision,
    referenced_blobs,
)
from hubd.catalog.views import repo_detail, repo_summary
from hubd.errors import ConfigError, ReplayedRevision

Hubd = Callable[..., Result]


def test_migrations_match_the_models(catalog_url: str) -> None:
    """A catalog migrated step by step equals one a new home creates from the models."""
    engine = create_catalog_engine(catalog_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    open_catalog(catalog_url)  # already at HEAD: nothing to create
    assert current_revision(engine) == HEAD
    engine.dispose()
    assert diff == []


def test_a_new_catalog_is_created_from_the_models_at_head(catalog_url: str) -> None:
    engine = create_catalog_engine(catalog_url)
    open_catalog(catalog_url)
    assert current_revision(engine) == HEAD
    assert create_fresh(engine) is False  # a second process finds it made
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


# Each process opens a new catalog at the same instant, round after round.
OPENER = """
import sys, time
from hubd.catalog.db import open_catalog
directory, start, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
for n in range(rounds):
    while time.time() < start + 0.3 * n:
        pass
    open_catalog(f"sqlite:///{directory}/catalog-{n}.db")
"""


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_catalog_at_once(tmp_path: Path) -> None:
    """Turning on WAL takes an exclusive lock the busy timeout does not wait for: processes
    opening a new catalog at the same moment failed now and then with "database is locked"."""
    start, rounds = time.time() + 2.0, 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(start), str(rounds)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    for n in range(rounds):
        engine = create_catalog_engine(f"sqlite:///{tmp_path / f'catalog-{n}.db'}")
        assert current_revision(engine) == HEAD
        engine.dispose()


def test_head_constant_is_alembics_head(catalog_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    engine = create_catalog_engine(catalog_url)
    assert current_revision(engine) is None
    open_catalog(catalog_url)
    assert current_revision(engine) == HEAD
    engine.dispose()


def record(commit: str, refs: list[str], sha: str = "a" * 64) -> RevisionRecord:
    return RevisionRecord(
        repo_id="acme/m",
        commit=commit,
        source_endpoint="http://hub",
        refs=refs,
        files=[FileRecord("model.safetensors", 10, sha, "b" * 40, True)],
        card=CardRecord(license="mit", base_model=["x/y"]),
        is_adapter=False,
        base_model="x/y",
        node="n1",
        client="hubd/test",
        fetched_at=datetime.now(UTC),
    )


def test_record_is_idempotent_and_moves_refs(catalog_url: str) -> None:
    factory = open_catalog(catalog_url)
    with factory.begin() as s:
        record_revision(s, record("1" * 40, ["main"]))
    with factory.begin() as s:
        record_revision(s, record("1" * 40, ["main", "v1"]))
        record_revision(s, record("2" * 40, ["main"], sha="c" * 64))
    with factory() as s:
        repo = get_repo(s, "acme/m")
        assert [r.commit for r in repo.revisions] == ["1" * 40, "2" * 40]
        assert len(repo.revisions[0].files) == 1 and len(repo.revisions[0].provenance) == 1
        assert find_revision(s, "acme/m", "main").commit == "2" * 40  # type: ignore[union-attr]
        assert find_revision(s, "acme/m", "v1").commit == "1" * 40  # type: ignore[union-attr]
        assert find_revision(s, "acme/m", "1111111").commit == "1" * 40  # type: ignore[union-attr]
        assert find_revision(s, "acme/m", "nope") is None
        assert referenced_blobs(s) == {"a" * 64, "c" * 64}
        assert repo.revisions[0].card.license == "mit"  # type: ignore[union-attr]
    with (
        pytest.raises(ReplayedRevision, match="refusing to change a file within a commit"),
        factory.begin() as s,  # a source that claims other content for a known commit
    ):
        record_revision(s, record("1" * 40, ["main"], sha="d" * 64))
    with factory() as s:
        assert referenced_blobs(s) == {"a" * 64, "c" * 64}


def test_card_fields_of_any_length(catalog_url: str) -> None:
    """Cards are free text: a long license_link must record on PostgreSQL as on SQLite."""
    card = CardRecord(
        license="other-" + "x" * 300,
        license_name="n" * 400,
        license_link="https://example.org/" + "l" * 2000,
        base_model_relation="r" * 80,
        pipeline_tag="p" * 150,
    )
    factory = open_catalog(catalog_url)
    with factory.begin() as s:
        record_revision(s, dataclasses.replace(record("3" * 40, ["main"]), card=card))
    with factory() as s:
        stored = get_repo(s, "acme/m").revisions[0].card
        assert stored is not None and stored.license_link == card.license_link
    factory.kw["bind"].dispose()


def test_times_come_back_as_the_same_instant_in_utc(catalog_url: str) -> None:
    """UTCDateTime: SQLite keeps no zone, PostgreSQL answers in the session's (tests/pg.sh
    runs the server in Pacific/Chatham, +12:45 or +13:45, so a lost zone would show)."""
    fetched = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5.5)))
    factory = open_catalog(catalog_url)
    with factory.begin() as s:
        record_revision(s, replace(record("1" * 40, ["main"]), fetched_at=fetched))
    with factory() as s:
        revision = get_repo(s, "acme/m").revisions[0]
        for value in (revision.mirrored_at, revision.provenance[0].fetched_at):
            assert value == fetched and value.utcoffset() == timedelta(0)
        shown = repo_detail(get_repo(s, "acme/m")).model_dump(mode="json")
        assert shown["mirrored_at"] == "2026-03-01T04:00:15.123456+00:00"


def test_ls_and_show_queries(catalog_url: str) -> None:
    factory = open_catalog(catalog_url)
    with factory.begin() as s:
        record_revision(s, record("1" * 40, ["v1"]))
        record_revision(s, record("2" * 40, ["main"], sha="c" * 64))
        lora = replace(
            record("3" * 40, ["main"]),
            repo_id="acme/a-lora",
            is_adapter=True,
            card=CardRecord(license="apache-2.0", base_model=["acme/m"]),
            base_model="acme/m",
        )
        record_revision(s, lora)
    with factory() as s:
        rows = repo_summaries(s)
        shown = [repo_summary(get_repo(s, r["repo"])).model_dump(mode="json") for r in rows]
        assert rows == shown  # `ls` as `show`
        detail = repo_detail(get_repo(s, "acme/m")).model_dump(mode="json")
    assert [(r["repo"], r["kind"], r["revisions"], r["license"]) for r in rows] == [
        ("acme/a-lora", "adapter", 1, "apache-2.0"),
        ("acme/m", "model", 2, "mit"),
    ]
    assert rows[0]["base_model"] == "acme/m" and rows[1]["refs"] == {
        "v1": "1" * 40,
        "main": "2" * 40,
    }
    assert [(r["commit"][0], r["refs"], r["size"]) for r in detail["revisions"]] == [
        ("1", ["v1"], 10),
        ("2", ["main"], 10),
    ]
    assert detail["revisions"][1]["files"][0]["sha256"] == "c" * 64
    assert detail["revisions"][1]["card"]["base_model"] == ["x/y"]


def test_db_upgrade_and_current(
    hubd: Hubd, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBD_CATALOG_URL", catalog_url)
    before = hubd("db", "current")
    assert before.code == 0 and f"empty, head is {HEAD}: run `hubd db upgrade`" in before.out
    upgraded = hubd("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert f"upgraded empty -> {HEAD} (head)" in upgraded.out
    assert f"already at {HEAD} (head)" in hubd("db", "upgrade").out
    assert hubd("db", "current").out.endswith(f": {HEAD} (head)\n")
    assert json.loads(hubd("db", "current", "--json").out)["current"] == HEAD


def test_unreachable_server_is_a_config_error(hubd: Hubd, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://hubd:secret@127.0.0.1:1/hubd?connect_timeout=5"
    with pytest.raises(ConfigError, match=r"cannot open the catalog at postgresql\+psycopg"):
        open_catalog(url)
    monkeypatch.setenv("HUBD_CATALOG_URL", url)
    result = hubd("db", "current")
    assert result.code == 2 and "hubd: error: cannot open the catalog" in result.err
    assert "secret" not in result.err


def test_config_hides_the_catalog_password(hubd: Hubd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBD_CATALOG_URL", "postgresql+psycopg://hubd:secret@db/hubd")
    rows = {r["key"]: r["value"] for r in json.loads(hubd("config", "--json").out)}
    assert rows["catalog.url"] == "postgresql+psycopg://hubd:***@db/hubd"
    assert "secret" not in hubd("config").out
