"""Shared pytest fixtures: databases (SQLite and PostgreSQL) and sessions."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session

import parkgrid.models  # noqa: F401  (registers every table on Base.metadata)
from parkgrid.db import Base, make_engine

# =========================================================================== databases
# pg_url, sqlite_url, db_session. PostgreSQL tests get a database of their own, created
# for the test session and dropped after it; they fail (never skip) if the server is down.

PG_SERVER_URL = os.environ.get(
    "PARKGRID_TEST_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
PG_START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _libpq(url: str) -> str:
    """The same URL for psycopg itself (which does not know SQLAlchemy's driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty, uniquely named PostgreSQL database for this test session."""
    name = f"parkgrid_test_{uuid.uuid4().hex[:12]}"
    admin_url = _libpq(f"{PG_SERVER_URL}/postgres")
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        problem = str(exc).strip()
    else:
        problem = ""
    if problem:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER_URL}: {problem}\n"
            f"Start it with:  {PG_START_HINT}\n"
            "or point PARKGRID_TEST_PG_SERVER at a server that trusts this user.",
            pytrace=False,
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER_URL}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            # FORCE: a test that leaked a connection must not leave the database behind.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a fresh SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'parkgrid-test.sqlite3'}"


@pytest.fixture
def db_session(sqlite_url: str) -> Iterator[Session]:
    """A session on a fresh SQLite schema (from the models); rolled back and closed after."""
    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()
        engine.dispose()


# =========================================================================== end databases


# =========================================================================== platform
# A demo park on SQLite and an in-process eth-tester chain, built once per test session;
# each test gets a copy of the database file and the chain reverted to the same snapshot.

import shutil  # noqa: E402

from parkgrid.config import ETH_TESTER, Settings  # noqa: E402
from parkgrid.wiring import Platform  # noqa: E402

TEST_SECRET = "test-secret-not-for-production"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    from parkgrid import migrate
    from parkgrid.demo import generate_demo_park, load_demo_park
    from parkgrid.services.chain_setup import setup_chain

    folder = tmp_path_factory.mktemp("demo-template")
    settings = Settings(data_dir=folder, database_url=f"sqlite:///{folder / 'demo.sqlite3'}",
                        chain_url=ETH_TESTER, secret_key=TEST_SECRET).with_defaults()
    platform = Platform(settings)
    migrate.upgrade(settings.database_url)
    with platform.unit_of_work() as session:
        load_demo_park(session, platform.keybox, generate_demo_park())
    setup_chain(platform, funder=platform.chain.funded_account())
    platform.engine.dispose()
    return settings, platform.chain, platform.chain.snapshot()


@pytest.fixture
def demo_platform(demo_template, tmp_path) -> Iterator[Platform]:
    """The demo park, ready to trade: database copied, chain back at the template snapshot."""
    settings, chain, snapshot = demo_template
    database = tmp_path / "demo.sqlite3"
    shutil.copy(Path(settings.database_url.removeprefix("sqlite:///")), database)
    chain.revert_to(snapshot)
    # The dispatch desk offers jobs by hand here, so tests drive each step; automatic dispatch
    # has its own tests (test_dispatch_service, the API's and the browser's repair tests).
    platform = Platform(Settings(data_dir=tmp_path, database_url=f"sqlite:///{database}",
                                 chain_url=ETH_TESTER, secret_key=TEST_SECRET,
                                 auto_dispatch=False))
    platform._chain = chain  # the in-process chain is shared; its state was just reset
    yield platform
    platform.engine.dispose()


@pytest.fixture
def app(demo_platform):
    from parkgrid.web import create_app

    app = create_app(demo_platform.settings, demo_platform)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


# =========================================================================== end platform
