"""Opening the catalog: engine, migrations, sessions.

SQLite is the embedded default. Its writers take the database lock at BEGIN (``BEGIN
IMMEDIATE``) so that two hubd processes recording the same revision serialise instead of failing
half-way, and WAL lets readers (``hubd ls``) run beside a writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; tests check it against alembic's own view of the scripts.
HEAD = "0004"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_catalog_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigError(f"catalog.url {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema version recorded by alembic, or None for an empty database."""
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent)."""
    from alembic import command  # only when a migration is due: saves start-up time
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_catalog(url: str) -> sessionmaker[Session]:
    """An engine at ``url`` with the schema migrated, as a session factory."""
    engine = create_catalog_engine(url)
    try:
        if current_revision(engine) != HEAD:
            upgrade(engine)
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the catalog at {engine.url!r}: {exc}") from None
    return sessionmaker(engine, expire_on_commit=False)
