from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hubd.catalog.db import HEAD, MIGRATIONS, create_catalog_engine, current_revision, open_catalog
from hubd.catalog.models import Base
from hubd.catalog.queries import (
    CardRecord,
    FileRecord,
    RevisionRecord,
    find_revision,
    get_repo,
    record_revision,
    referenced_blobs,
)


def test_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    open_catalog(url)
    open_catalog(url)  # idempotent
    engine = create_catalog_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_head_constant_is_alembics_head(tmp_path: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert current_revision(create_catalog_engine(url)) is None
    open_catalog(url)
    assert current_revision(create_catalog_engine(url)) == HEAD


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


def test_record_is_idempotent_and_moves_refs(tmp_path: Path) -> None:
    factory = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
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
