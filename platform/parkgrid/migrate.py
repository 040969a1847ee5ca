"""Run the repository's Alembic migrations from code, from any working directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from parkgrid.db import make_engine

REPO_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
SCRIPT_LOCATION = REPO_ROOT / "alembic"


class MigrationError(Exception):
    """A migration left the database inconsistent (e.g. dangling foreign keys on SQLite)."""


def alembic_config(connection: Connection | None = None) -> Config:
    """The repository's Alembic config, pointed at an absolute script location."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    # Called from an application or tests: leave their logging configuration alone.
    cfg.attributes["configure_logger"] = False
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Suspend SQLite foreign-key enforcement around a migration, then verify it.

    Batch migrations rebuild a table by copy, drop and rename; with enforcement on, the drop
    would fail on, or cascade into (deleting!), the rows of referencing tables. The pragma
    only takes effect outside a transaction, so it is set before the migration begins.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        yield
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise MigrationError(f"foreign keys broken after migration: {problems[:10]}")
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


@contextmanager
def _connection(url_or_engine: str | Engine) -> Iterator[Connection]:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as connection, sqlite_foreign_keys_off(connection):
            yield connection
            connection.commit()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (default: the newest)."""
    with _connection(url_or_engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(url_or_engine: str | Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` removes every table)."""
    with _connection(url_or_engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
