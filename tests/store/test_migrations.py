"""Migrations: they build exactly the schema of tables.py, on SQLite and on PostgreSQL.

``test_migrations_match_tables_py`` is the guard that keeps app/store/tables.py and
app/store/migrations/versions in step: change one without the other and it fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from click.testing import CliRunner
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from app.cli import cli
from app.runtime import Runtime
from app.store import schema
from app.store.database import Database
from app.store.dialect import allocate_job_ids
from app.store.tables import api_tokens, job_events, jobs, joins, metadata, schedules
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


# A finished job's row as every revision stores it (root_id: the first job's id).
OLD_JOB: dict[str, Any] = {
    "root_id": 1,
    "position": 0,
    "depth": 0,
    "target_object": "1.NOOP",
    "job_type": "NOOP",
    "parameters": {},
    "execute_on_error": False,
    "max_attempts": 1,
    "status": "FINISHED",
    "attempt": 1,
    "attempt_floor": 0,
    "run_after": 0.0,
    "cancel_requested": False,
    "created_at": 0.0,
    "updated_at": 0.0,
}


def _baseline_tables() -> dict[str, Table]:
    return dict(schema.scripts().get_revision(schema.BASELINE).module.baseline().tables)


def _old_release_database(db: Database) -> None:
    """What 0.1.0 left behind: its tables, one job with an event, no alembic_version."""
    old = schema.scripts().get_revision(schema.BASELINE).module.baseline()
    old.create_all(db.engine)
    with db.engine.begin() as conn:
        job_id = conn.execute(insert(old.tables["jobs"]).values(OLD_JOB)).inserted_primary_key[0]
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


# -- 0003: ids are never reused (AUTOINCREMENT on SQLite), jobs.arrival_outcome ------------

BEFORE_0003 = "0002_console_indexes"
NEVER_REUSED = ("jobs", "job_events", "joins", "api_tokens", "schedules")


def _sqlite_ddl(url: str) -> dict[str, str]:
    """CREATE statements by name; a rebuilt table's name comes back quoted from its rename."""
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name != :v"),
            {"v": "alembic_version"},
        ).all()
    engine.dispose()
    return {name: re.sub(r'^CREATE TABLE "(\w+)"', r"CREATE TABLE \1", sql) for name, sql in found}


# Created AUTOINCREMENT by 0004 (ids of models, assets and dependencies leave the database)
# and 0005 (run ids).
GRAPH_TABLES = {"models", "assets", "asset_dependencies", "runs"}
NOTIFICATION_TABLES = {"notification_rules", "notification_deliveries"}
# 0007: every automation table's ids are shown or paged on.
AUTOMATION_TABLES = {
    "asset_versions",
    "automation_ticks",
    "automation_requests",
    "asset_evaluations",
    "asset_events",
}


def test_sqlite_migrations_make_the_ddl_of_tables_py(sqlite_url: str, tmp_path: Path) -> None:
    """Alembic's comparison does not see AUTOINCREMENT: the CREATE statements must match."""
    schema.upgrade(sqlite_url)
    created = f"sqlite:///{tmp_path / 'create_all.db'}"
    engine = create_engine(created)
    metadata.create_all(engine)
    engine.dispose()
    migrated = _sqlite_ddl(sqlite_url)
    assert migrated == _sqlite_ddl(created)
    assert (
        {name for name, sql in migrated.items() if "AUTOINCREMENT" in sql}
        == {
            table.name
            for table in metadata.tables.values()
            if table.kwargs.get("sqlite_autoincrement")
        }
        == set(NEVER_REUSED) | GRAPH_TABLES | AUTOMATION_TABLES | NOTIFICATION_TABLES
    )


def _rows_at_0002(db: Database) -> None:
    """A used database: three jobs with their rows, a join, a token, a schedule that fired.

    Job 3 is gone again, but its Idempotency-Key still holds its id. (SQLite cannot know of
    an id that no row holds any more: one purged before 0003 may still be issued once more.)
    """
    old = _baseline_tables()
    with db.engine.begin() as conn:
        for job_id in (1, 2):
            conn.execute(insert(old["jobs"]).values(OLD_JOB))
            conn.execute(
                insert(old["job_events"]).values(
                    job_id=job_id, to_status="FINISHED", attempt=1, at=0.0, reason="x"
                )
            )
        conn.execute(insert(old["jobs"]).values(OLD_JOB))
        conn.execute(insert(old["job_logs"]).values(job_id=1, text="hi", dropped_bytes=0))
        join_id = conn.execute(
            insert(old["joins"]).values(
                scope="tree:1:j",
                key="j",
                root_id=1,
                trigger="ALL_SUCCESS",
                expected=1,
                outcome_counts={"FINISHED": 1},
                state="FIRED",
                owner_job_id=2,
                created_at=0.0,
            )
        ).inserted_primary_key[0]
        conn.execute(update(old["jobs"]).where(old["jobs"].c.id == 2).values(join_id=join_id))
        conn.execute(
            insert(old["join_arrivals"]).values(
                join_id=join_id, job_id=2, parent_job_id=1, parent_outcome="FINISHED", at=0.0
            )
        )
        conn.execute(
            insert(old["api_tokens"]).values(
                name="ci", role="admin", token_hash="0" * 64, created_at=0.0
            )
        )
        schedule_id = conn.execute(
            insert(old["schedules"]).values(
                name="nightly",
                cron="0 3 * * *",
                timezone="UTC",
                payload={"targetObject": "NOOP"},
                enabled=True,
                created_at=0.0,
                updated_at=0.0,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(old["schedule_fires"]).values(
                schedule_id=schedule_id, fire_time=0.0, root_job_id=1, fired_at=0.0
            )
        )
        conn.execute(
            insert(old["idempotency_keys"]).values(
                key="k", body_hash="0" * 64, job_id=3, created_at=0.0
            )
        )
        conn.execute(delete(old["jobs"]).where(old["jobs"].c.id == 3))


def _contents(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in the columns of the baseline (0003 adds one)."""
    with db.engine.connect() as conn:
        return {
            name: [
                dict(row)
                for row in conn.execute(select(table).order_by(*table.primary_key)).mappings()
            ]
            for name, table in _baseline_tables().items()
        }


def _add_one_of_each(conn: Connection) -> dict[str, int]:
    """A new job (its id allocated as submissions do), event, join, token and schedule."""
    [job_id] = allocate_job_ids(conn, 1)
    conn.execute(insert(jobs).values(OLD_JOB | {"id": job_id, "root_id": job_id}))
    rows: dict[Table, dict[str, Any]] = {
        job_events: dict(job_id=job_id, to_status="FINISHED", attempt=1, at=0.0, reason="x"),
        joins: dict(
            scope=f"tree:{job_id}:j",
            key="j",
            trigger="ALL_SUCCESS",
            expected=1,
            state="WAITING",
            created_at=0.0,
        ),
        api_tokens: dict(name="new", role="admin", token_hash=f"{job_id:064d}", created_at=0.0),
        schedules: dict(
            name=f"s{job_id}",
            cron="0 3 * * *",
            timezone="UTC",
            payload={},
            enabled=True,
            created_at=0.0,
            updated_at=0.0,
        ),
    }
    added = {"jobs": job_id}
    for table, values in rows.items():
        added[table.name] = conn.execute(insert(table).values(values)).inserted_primary_key[0]
    return added


def _delete(conn: Connection, ids: dict[str, int]) -> None:
    for name in ("job_events", "jobs", "joins", "api_tokens", "schedules"):
        table = metadata.tables[name]
        conn.execute(delete(table).where(table.c.id == ids[name]))


def test_0003_keeps_every_row_and_ids_go_on_above_them(fresh_db: Database) -> None:
    schema.upgrade(fresh_db, BEFORE_0003)
    _rows_at_0002(fresh_db)
    before = _contents(fresh_db)
    issued = {name: max(row["id"] for row in before[name]) for name in NEVER_REUSED}
    issued["jobs"] = 3  # deleted, but its id was given out (and is still held)

    schema.upgrade(fresh_db)

    assert _contents(fresh_db) == before
    with fresh_db.engine.connect() as conn:
        assert schema.differences(conn, metadata) == []
        assert conn.execute(select(jobs.c.arrival_outcome)).scalars().all() == [None, None]
    added = fresh_db.write(_add_one_of_each)
    assert added == {name: top + 1 for name, top in issued.items()}
    # The newest rows deleted again (retention, `DELETE /schedules/<id>`): no id comes back.
    fresh_db.write(lambda conn: _delete(conn, added))
    assert fresh_db.write(_add_one_of_each) == {name: top + 1 for name, top in added.items()}


def test_0003_downgrades_keeping_every_row(fresh_db: Database) -> None:
    schema.upgrade(fresh_db, BEFORE_0003)
    _rows_at_0002(fresh_db)
    before = _contents(fresh_db)
    schema.upgrade(fresh_db)
    schema.downgrade(fresh_db, BEFORE_0003)
    assert schema.current_revision(fresh_db) == BEFORE_0003
    assert _contents(fresh_db) == before
    assert "arrival_outcome" not in {
        c["name"] for c in inspect(fresh_db.engine).get_columns("jobs")
    }
    schema.upgrade(fresh_db)
    with fresh_db.engine.connect() as conn:
        assert schema.differences(conn, metadata) == []


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


def test_the_head_read_from_the_scripts_is_alembics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes compare the database's revision with the scripts' head without importing
    Alembic; that head must be the one Alembic finds, and a branched history (two heads)
    must leave the answer to Alembic."""
    assert schema.shipped_head() == schema.head_revision()
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "__init__.py").write_text("")
    for rev, down in (("0001_a", None), ("0002_b", "0001_a"), ("0003_c", "0001_a")):
        (versions / f"{rev}.py").write_text(
            f'"""Revision ID: {rev}"""\nrevision = "{rev}"\n'
            f"down_revision{': str | None' if down else ''} = {down and repr(down)}\n"
        )
    monkeypatch.setattr(schema, "MIGRATIONS", tmp_path)
    schema.shipped_head.cache_clear()
    try:
        assert schema.shipped_head() is None
        (versions / "0004_merge.py").write_text(
            "revision = '0004_merge'\ndown_revision = ('0002_b', '0003_c')\n"
        )
        schema.shipped_head.cache_clear()
        assert schema.shipped_head() is None  # a merge's tuple is not read: Alembic decides
    finally:
        monkeypatch.undo()
        schema.shipped_head.cache_clear()


def test_the_revision_is_read_as_alembic_reads_it(fresh_db: Database) -> None:
    assert schema.current_revision(fresh_db) is None
    for revision in (schema.BASELINE, "head"):
        schema.upgrade(fresh_db, revision)
        with fresh_db.engine.connect() as conn:
            expected = MigrationContext.configure(conn).get_current_revision()
        assert schema.current_revision(fresh_db) == expected
