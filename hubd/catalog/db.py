"""Opening the catalog: engine, migrations, sessions.

SQLite is the embedded default. Its writers take the database lock at BEGIN (``BEGIN
IMMEDIATE``) so that two hubd processes recording the same revision serialise instead of failing
half-way, and WAL lets readers (``hubd ls``) run beside a writer.

PostgreSQL (``postgresql+psycopg://…``) is the catalog several daemons share. Its connections
are pinged before use, so a daemon outlives a database restart. Transactions opened with
``sessionmaker.begin()`` (hubd's writers) take one advisory lock, the equivalent of SQLite's
``BEGIN IMMEDIATE``: two nodes recording the same repo or blob serialise instead of one failing
on a unique key; readers never wait. Migrations hold a lock too, so daemons starting together on
an empty database do not all create the tables.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin, sessionmaker

from ..errors import ConfigError, StoreError
from ..extras import require

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; tests check it against alembic's own view of the scripts.
HEAD = "0013"
INSERT_BATCH = 1000  # rows per INSERT of insert_new: a few thousand parameters at most


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # Turning on WAL takes an exclusive lock without calling the busy handler, so processes
    # opening a new catalog at the same moment retry instead of failing "database is locked".
    for attempt in range(300):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 299:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_catalog_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):  # SQLAlchemy would want psycopg2
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername == "postgresql+psycopg":
            require("psycopg", "postgres", "a PostgreSQL catalog")
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
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
    """The schema version recorded by alembic, or None for an empty database.

    An unreachable server raises: it must not look like an empty catalog.
    """
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _lock_migrations(connection: Connection) -> None:
    """On PostgreSQL, one migrating process at a time; the lock ends with the transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('hubd-migrations'))"))


def _pg_lock_writers(_: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if transaction.origin is SessionTransactionOrigin.BEGIN:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('hubd-writers'))"))


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent)."""
    from alembic import command  # only when a migration is due: saves start-up time
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        _lock_migrations(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def create_fresh(engine: Engine) -> bool:
    """Create the schema of an empty database from the models and stamp it HEAD.

    What alembic's documentation recommends for new databases; the tests check that the models
    and the migrations agree. Saves importing alembic (a fifth of a second) on every new home.
    False when another process created the schema first (checked under the migration lock).
    """
    from .models import Base

    with engine.begin() as connection:
        _lock_migrations(connection)
        if inspect(connection).has_table("alembic_version"):
            return False
        Base.metadata.create_all(connection)
        connection.execute(
            text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        connection.execute(text("INSERT INTO alembic_version VALUES (:head)"), {"head": HEAD})
    return True


# What SQLite and PostgreSQL say when the catalog's disk cannot take a write.
_DISK_ERRORS = ("disk is full", "No space left", "disk I/O error", "readonly database")


@contextmanager
def catalog_errors() -> Iterator[None]:
    """A catalog write the disk refuses is a StoreError (exit 8), like any other full disk."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig)
        if not any(text in reason for text in _DISK_ERRORS):
            raise
        raise StoreError(
            f"cannot write the catalog: {reason}",
            hint="free space and re-run: nothing was recorded",
        ) from None


@contextmanager
def _reported(engine: Engine) -> Iterator[None]:
    """Database errors (unreachable server, bad credentials) as a ConfigError naming the URL."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the catalog at {engine.url!r}: {exc}") from None


def catalog_version(url: str) -> str | None:
    """The schema version of the catalog at ``url``, leaving it as it is (`hubd db current`)."""
    engine = create_catalog_engine(url)
    try:
        with _reported(engine):
            return current_revision(engine)
    finally:
        engine.dispose()


def upgrade_catalog(url: str) -> tuple[str | None, str | None]:
    """Migrate the catalog at ``url`` to HEAD; (version before, after) (`hubd db upgrade`)."""
    engine = create_catalog_engine(url)
    try:
        with _reported(engine):
            before = current_revision(engine)
            upgrade(engine)
            return before, current_revision(engine)
    finally:
        engine.dispose()


def open_catalog(url: str) -> sessionmaker[Session]:
    """An engine at ``url`` with the schema migrated, as a session factory."""
    engine = create_catalog_engine(url)
    with _reported(engine):
        version = current_revision(engine)
        if version != HEAD and not (version is None and create_fresh(engine)):
            upgrade(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name == "postgresql":
        event.listen(factory, "after_begin", _pg_lock_writers)
    return factory


class Commits:
    """Whether the catalog may have changed since an answer was built from it: its version.

    On SQLite this is ``PRAGMA data_version`` of a connection of its own that never writes: it
    moves whenever any other connection, of this process or another (a CLI mirror next to the
    daemon), commits. A read costs microseconds, so the server may ask on every request.
    PostgreSQL has no such counter; there :meth:`version` is None and nothing is kept.
    """

    def __init__(self, catalog: sessionmaker[Session]) -> None:
        engine: Engine = catalog.kw["bind"]
        database = engine.url.database
        on_disk = engine.dialect.name == "sqlite" and database and database != ":memory:"
        self._path = database if on_disk else None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def version(self) -> int | None:
        if self._path is None:
            return None
        try:
            with self._lock:
                if self._connection is None:
                    self._connection = sqlite3.connect(self._path, check_same_thread=False)
                row = self._connection.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:  # busy or gone: this request keeps nothing and uses nothing kept
            return None
        return int(row[0])


def insert_new(session: Session, model: type[Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows``, leaving any whose key another process inserted first as it is (ON
    CONFLICT DO NOTHING on both backends), in batches within every backend's parameter limit."""
    # Each dialect's module is imported by the backend that uses it (PostgreSQL's pulls asyncpg's).
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        insert: Callable[[Any], Any] = pg_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert
    for start in range(0, len(rows), INSERT_BATCH):
        batch = rows[start : start + INSERT_BATCH]
        session.execute(insert(model).values(list(batch)).on_conflict_do_nothing())
