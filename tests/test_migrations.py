"""Migrations: they build exactly the schema of tables.py, on SQLite and on PostgreSQL.

``test_migrations_match_tables_py`` is the guard that keeps app/store/tables.py and
app/store/migrations/versions in step: change one without the other and it fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.engine import make_url

from app.store import schema
from app.store.database import Database
from app.store.tables import metadata
from tests.conftest import POSTGRES_ADMIN_URL


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    """An empty database of its own (the shared test database holds other tests' tables)."""
    if database_url.startswith("sqlite"):
        yield database_url
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"jobchain_mig_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_db(fresh_url: str) -> Iterator[Database]:
    db = Database(fresh_url, pool_size=2)
    yield db
    db.dispose()


def diff_kinds(diffs: list[Any]) -> set[str]:
    """The kinds of change in compare_metadata's output ("add_index", "modify_type", ...)."""
    kinds = set()
    for diff in diffs:
        for change in diff if isinstance(diff, list) else [diff]:
            kinds.add(change[0])
    return kinds


def test_migrations_match_tables_py(fresh_db: Database) -> None:
    schema.upgrade(fresh_db)
    assert schema.current_revision(fresh_db) == schema.head_revision()
    with fresh_db.engine.connect() as conn:
        assert schema.differences(conn, metadata) == []


def _drop_index(m: MetaData) -> None:
    m.tables["jobs"].indexes.discard(next(i for i in m.tables["jobs"].indexes))


def _add_column(m: MetaData) -> None:
    m.tables["jobs"].append_column(Column("extra", Integer, nullable=True))


def _widen_type(m: MetaData) -> None:
    m.tables["jobs"].c.status.type = String(40)


def _make_nullable(m: MetaData) -> None:
    m.tables["jobs"].c.job_type.nullable = True


def _add_unique(m: MetaData) -> None:
    m.tables["api_tokens"].append_constraint(UniqueConstraint("name", name="uq_token_name"))


def _add_foreign_key(m: MetaData) -> None:
    m.tables["jobs"].c.parent_id.append_foreign_key(ForeignKey("jobs.id"))


MUTATIONS: dict[str, Callable[[MetaData], None]] = {
    "remove_index": _drop_index,
    "add_column": _add_column,
    "modify_type": _widen_type,
    "modify_nullable": _make_nullable,
    "add_constraint": _add_unique,
    "add_fk": _add_foreign_key,
}


def test_the_comparison_sees_every_kind_of_drift(fresh_db: Database) -> None:
    """The guard above is only worth something if it notices a change of each kind."""
    schema.upgrade(fresh_db)
    with fresh_db.engine.connect() as conn:
        for kind, mutate in MUTATIONS.items():
            drifted = MetaData()
            for table in metadata.sorted_tables:
                table.to_metadata(drifted)
            mutate(drifted)
            assert diff_kinds(schema.differences(conn, drifted)) == {kind}, kind


def test_downgrade_to_base_and_up_again(fresh_db: Database) -> None:
    schema.upgrade(fresh_db)
    schema.downgrade(fresh_db, "base")
    assert schema.current_revision(fresh_db) is None
    assert set(inspect(fresh_db.engine).get_table_names()) == {"alembic_version"}
    schema.upgrade(fresh_db)
    with fresh_db.engine.connect() as conn:
        assert schema.differences(conn, metadata) == []
