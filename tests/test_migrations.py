"""Migrations: they build exactly the schema of tables.py, on SQLite and on PostgreSQL.

``test_migrations_match_tables_py`` is the guard that keeps app/store/tables.py and
app/store/migrations/versions in step: change one without the other and it fails.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from click.testing import CliRunner
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    create_engine,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url

from app.cli import cli
from app.runtime import Runtime
from app.store import schema
from app.store.database import Database, allocate_job_ids
from app.store.tables import job_events, metadata
from config import Settings
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


# -- databases made by jobchain 0.1.0 (create_all, no version) ------------------------------


def _old_release_database(db: Database) -> None:
    """What 0.1.0 left behind: its tables, one job with an event, no alembic_version."""
    old = schema.scripts().get_revision(schema.BASELINE).module.baseline()
    old.create_all(db.engine)
    with db.engine.begin() as conn:
        job_id = conn.execute(
            insert(old.tables["jobs"]).values(
                root_id=1,
                position=0,
                depth=0,
                target_object="1.NOOP",
                job_type="NOOP",
                parameters={},
                execute_on_error=False,
                max_attempts=1,
                status="FINISHED",
                attempt=1,
                attempt_floor=0,
                run_after=0.0,
                cancel_requested=False,
                created_at=0.0,
                updated_at=0.0,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(old.tables["job_events"]).values(
                job_id=job_id, to_status="FINISHED", attempt=1, at=0.0, reason="x"
            )
        )


def test_a_database_of_the_old_release_is_stamped_and_kept(fresh_db: Database) -> None:
    _old_release_database(fresh_db)
    assert schema.current_revision(fresh_db) is None
    schema.upgrade(fresh_db)
    assert schema.current_revision(fresh_db) == schema.head_revision()
    with fresh_db.engine.connect() as conn:
        assert schema.differences(conn, metadata) == []
        assert conn.execute(select(func.count()).select_from(job_events)).scalar_one() == 1
    # It works as any other: the next job id follows the old ones (PostgreSQL's sequence too).
    assert fresh_db.write(lambda conn: allocate_job_ids(conn, 1)) == [2]


def test_an_unversioned_database_that_differs_is_refused(fresh_db: Database) -> None:
    _old_release_database(fresh_db)
    with fresh_db.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_jobs_claim"))
    with pytest.raises(schema.SchemaError, match="ix_jobs_claim"):
        schema.upgrade(fresh_db)
    assert schema.current_revision(fresh_db) is None


def test_tables_of_other_applications_are_left_alone(fresh_db: Database) -> None:
    with fresh_db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE their_table (id INTEGER PRIMARY KEY)"))
    schema.upgrade(fresh_db)
    assert "their_table" in inspect(fresh_db.engine).get_table_names()
    assert schema.current_revision(fresh_db) == schema.head_revision()


# -- starting a process ---------------------------------------------------------------------


def test_runtime_migrates_at_start_unless_told_not_to(fresh_url: str) -> None:
    with pytest.raises(schema.SchemaError, match="jobchain db upgrade"):
        Runtime.create(Settings(database_url=fresh_url, workers=1, auto_migrate=False))
    Runtime.create(Settings(database_url=fresh_url, workers=1)).db.dispose()
    assert schema.current_revision(fresh_url) == schema.head_revision()
    Runtime.create(Settings(database_url=fresh_url, workers=1, auto_migrate=False)).db.dispose()


def test_the_auto_migrate_setting_reads_from_the_environment() -> None:
    assert Settings.from_env({}).auto_migrate is True
    assert Settings.from_env({"JOBCHAIN_AUTO_MIGRATE": "0"}).auto_migrate is False
    assert Settings.from_env({"JOBCHAIN_AUTO_MIGRATE": "true"}).auto_migrate is True
    with pytest.raises(ValueError, match="boolean"):
        Settings.from_env({"JOBCHAIN_AUTO_MIGRATE": "maybe"})


# Each child imports everything, says "ready", then blocks until "go" arrives on its stdin:
# all three start migrating within a millisecond of each other.
_CHILD = """
import logging, sys
from app.cli import cli
from app.runtime import Runtime
from config import Settings
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
how, url = sys.argv[1], sys.argv[2]
print("ready", flush=True)
assert sys.stdin.readline() == "go\\n"
if how == "cli":
    cli(["db", "upgrade", "--database-url", url])
else:
    Runtime.create(Settings(database_url=url, workers=1)).db.dispose()
"""


def test_processes_starting_at_once_migrate_once(fresh_url: str) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, how, fresh_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for how in ("cli", "runtime", "cli")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=60) for child in children]
    for child, (_out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    # Alembic logs "Running upgrade 0001_baseline -> 0002_..., ..." once per revision applied.
    log = "".join(err for _out, err in results)
    for script in schema.scripts().walk_revisions():
        assert log.count(f"-> {script.revision},") == 1, log
    with Database(fresh_url).engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            schema.head_revision()
        ]
        assert schema.differences(conn, metadata) == []


def test_a_batch_migration_on_sqlite_keeps_child_rows(sqlite_url: str) -> None:
    """SQLite migrations copy and drop tables; that must not cascade-delete job_events."""
    db = Database(sqlite_url)
    _old_release_database(db)
    schema.upgrade(db)
    with schema._migration_lock(db) as conn:
        operations = Operations(MigrationContext.configure(conn))
        with operations.batch_alter_table("jobs", recreate="always") as batch:
            batch.add_column(Column("extra", Integer, nullable=True))
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(job_events)).scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    db.dispose()


def test_the_db_commands(fresh_url: str) -> None:
    def db(*args: str) -> str:
        result = CliRunner().invoke(cli, ["db", *args])
        assert result.exit_code == 0, result.output
        return result.output

    head = schema.head_revision()
    assert db("current", "--database-url", fresh_url).startswith(f"none (head is {head}")
    assert db("upgrade", schema.BASELINE, "--database-url", fresh_url).endswith(
        f"at {schema.BASELINE}\n"
    )
    assert db("upgrade", "--database-url", fresh_url).endswith(f"at {head}\n")
    assert db("current", "--database-url", fresh_url) == f"{head} (head)\n"
    assert db("history").splitlines()[-1].startswith(schema.BASELINE)
    assert db("downgrade", "base", "--database-url", fresh_url).endswith("at base (empty)\n")
    typo = CliRunner().invoke(cli, ["db", "upgrade", "9999_nope", "--database-url", fresh_url])
    assert typo.exit_code == 1 and "9999_nope" in typo.output
