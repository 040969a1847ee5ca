"""Migrations on SQLite and PostgreSQL: up, down, up again, and the same schema as the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.engine import Engine

from parkgrid import migrate
from parkgrid.db import Base, make_engine

pytestmark = pytest.mark.integration

BACKENDS = ["sqlite", "postgresql"]


def _head() -> str:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        # Leave the shared PostgreSQL database as empty as it was given to us.
        migrate.downgrade(engine, "base")
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _schema_differences(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_downgrade_upgrade(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the script location must not depend on the working directory
    assert migrate.current(engine) is None

    migrate.upgrade(engine)
    assert migrate.current(engine) == _head()
    assert _tables(engine) == set(Base.metadata.tables)

    migrate.downgrade(engine, "base")
    assert migrate.current(engine) is None
    assert _tables(engine) == set()

    migrate.upgrade(str(engine.url.render_as_string(hide_password=False)))
    assert migrate.current(engine) == _head()
    assert _tables(engine) == set(Base.metadata.tables)


def test_migrated_schema_equals_the_models(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert _schema_differences(engine) == []

    # compare_metadata does not look at check constraints: compare their names directly.
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        found = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert found == expected, table.name

    # The enterprises <-> chain_accounts cycle: the foreign key added after both tables exist.
    fks = {fk["name"]: fk["referred_table"] for fk in inspector.get_foreign_keys("enterprises")}
    assert fks["fk_enterprises_chain_account_id_chain_accounts"] == "chain_accounts"


def test_comparison_would_notice_a_difference(engine: Engine) -> None:
    # Guards the test above against passing vacuously.
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE parks (id INTEGER PRIMARY KEY)"))
    diffs = _schema_differences(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE parks"))
    added_tables = {d[1].name for d in diffs if d[0] == "add_table"}
    added_park_columns = {d[3].name for d in diffs if d[0] == "add_column" and d[2] == "parks"}
    assert added_tables == set(Base.metadata.tables) - {"parks"}
    assert "period_minutes" in added_park_columns


def test_alembic_command_line_with_x_url(sqlite_url: str, tmp_path: Path) -> None:
    # env.py's other path: no connection passed in, URL from `-x url=...`, run from elsewhere.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(migrate.ALEMBIC_INI),
            "-x",
            f"url={sqlite_url}",
            "upgrade",
            "head",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    engine = make_engine(sqlite_url)
    try:
        assert migrate.current(engine) == _head()
        assert _tables(engine) == set(Base.metadata.tables)
    finally:
        engine.dispose()
