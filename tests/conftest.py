"""Fixtures: a fresh database per test on SQLite and on PostgreSQL, workers, a live API.

Store and engine tests take the ``db`` fixture and so run on both databases. PostgreSQL
is at JOBCHAIN_TEST_POSTGRES_URL (default: the local server); where none is reachable those
tests are skipped with the reason, except under CI=true, where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import schema
from app.store.database import Database
from app.store.tables import metadata
from app.web import create_app
from config import Settings
from jobs import REGISTRY
from tests.helpers import ADMIN_TOKEN, CALLBACK_SECRET, LiveServer

# Browser fixtures for the console tests (one chromium per session, a context per test).
pytest_plugins = ["tests.admin.browser"]

POSTGRES_ADMIN_URL = os.environ.get(
    "JOBCHAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# Fast timings so crash and lease tests finish in seconds.
TEST_SETTINGS = Settings(
    workers=4,
    lease_seconds=2.0,
    reap_interval_seconds=0.5,
    idle_poll_seconds=1.0,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    api_tokens=(f"admin:{ADMIN_TOKEN}",),
    callback_secrets=(CALLBACK_SECRET,),
)


def throwaway_postgres(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards.

    Skips the test where no server is reachable, except under CI=true, where it fails.
    """
    # pre-ping: the connection may idle for the whole session; a server restart must not
    # turn the final DROP DATABASE into an error.
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session."""
    yield from throwaway_postgres("jobchain_test")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobchain.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobchain.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return replace(TEST_SETTINGS, database_url=database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url, pool_size=16)
    if not database.is_sqlite:
        # The session's PostgreSQL database is reused: empty it, version table included.
        metadata.drop_all(database.engine)
        with database.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    # The migrations, as in production (about 10-25 ms more than create_all per test).
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Runtime:
    return Runtime(settings=settings, db=db, registry=REGISTRY)


@pytest.fixture
def pool(runtime: Runtime) -> Iterator[WorkerPool]:
    workers = WorkerPool(runtime.db, runtime.registry, runtime.settings).start()
    runtime.pool = workers
    yield workers
    workers.stop(grace_seconds=5)


@pytest.fixture
def live(runtime: Runtime) -> Iterator[LiveServer]:
    """The real API over HTTP (waitress), without workers unless ``pool`` is requested."""
    with LiveServer(create_app(runtime=runtime)) as server:
        yield server
