"""The database schema's version: Alembic migrations, run the same on SQLite and PostgreSQL.

Every process that starts (``serve``, ``worker``) brings the database to the newest revision
(unless ``auto_migrate`` is off). Several may start at once against one database, so an
upgrade runs under a lock: ``pg_advisory_lock`` on PostgreSQL, the write lock
(``BEGIN IMMEDIATE``) on SQLite; whoever comes second finds the work done. Both databases
have transactional DDL, so a failed migration leaves the previous revision intact.

A database made by 0.1.0's ``metadata.create_all`` has the tables but no version: it is
compared with the baseline revision and, if it matches, stamped with it.

Alembic is imported only to migrate, stamp or list revisions: a process that starts on a
database already at head reads the revision with a plain query and compares it with the
newest script's id, read from the file names (Alembic costs ~9 MiB per process).
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, MetaData, String, column, func, inspect, select, table

from app.store.database import WRITE_TRANSACTION, Database

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger("jobchain.schema")

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
# "jobchain" as a 64-bit number: the advisory lock migrations hold on PostgreSQL.
_LOCK_KEY = int.from_bytes(b"jobchain", "big")
# Alembic stores the revision in VARCHAR(32).
_MAX_REVISION_ID = 32
# Alembic's version table (its default name, in the connection's default schema).
_VERSION_TABLE = "alembic_version"
_REVISION_LINE = re.compile(
    r"""^(down_)?revision\s*(?::[^=]*)?=\s*(?:["']([^"']+)["']|None)\s*$""", re.MULTILINE
)


class _OnlyMigrations(logging.Filter):
    """Alembic names its dialect at every version check; only what it migrates is news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_OnlyMigrations())


class SchemaError(Exception):
    """The database's schema is not one this release can use or migrate."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's settings, built here rather than read from an alembic.ini."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # The file of a revision is named by its id: versions/0002_add_x.py.
    config.set_main_option("file_template", "%%(rev)s")
    config.attributes["connection"] = connection
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    """The revisions shipped with this release (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = scripts().get_current_head()
    assert head is not None, "no migration scripts"
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


@functools.cache
def shipped_head() -> str | None:
    """The head revision read from the scripts' ``revision``/``down_revision`` lines, without
    importing Alembic; None when they do not name exactly one head (then ask Alembic).
    tests/store/test_migrations.py checks that it is :func:`head_revision`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {bool(down): rev for down, rev in _REVISION_LINE.findall(path.read_text("utf-8"))}
        if False not in found:
            continue  # not a revision script (e.g. __init__.py)
        revisions.add(found[False])
        if found.get(True):
            parents.add(found[True])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _head() -> str:
    return shipped_head() or head_revision()


def current_revision(db_or_url: Database | str) -> str | None:
    """The revision the database is at; None for an empty (or 0.1.0, unstamped) one."""
    with _database(db_or_url) as db, db.engine.connect() as conn:
        if not inspect(conn).has_table(_VERSION_TABLE):
            return None
        version = select(column("version_num", String)).select_from(table(_VERSION_TABLE))
        rows: list[str] = list(conn.execute(version).scalars())
        if len(rows) <= 1:
            return rows[0] if rows else None
        # Several heads (a branched history): Alembic's own answer and error.
        from alembic.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db_or_url: Database | str, revision: str = "head") -> None:
    """Migrate the database to ``revision``; cheap when it is at head already (no Alembic)."""
    with _database(db_or_url) as db:
        if revision == "head" and current_revision(db) == _head():
            return
        command = _alembic_command()
        with _migration_lock(db) as conn, _alembic_errors():
            config = alembic_config(conn)
            _stamp_unversioned(conn, config)
            command.upgrade(config, revision)


def downgrade(db_or_url: Database | str, revision: str) -> None:
    """Migrate back to ``revision`` ("base": drop every table of jobchain)."""
    command = _alembic_command()
    with _database(db_or_url) as db, _migration_lock(db) as conn, _alembic_errors():
        command.downgrade(alembic_config(conn), revision)


def _alembic_command() -> Any:
    """``alembic.command``, with everything a migration loads imported now: not while the
    migration lock is held, where a slow import (seconds on a busy machine) would keep
    other starting processes waiting on SQLite's write lock past their busy timeout."""
    from alembic import command
    from alembic.autogenerate import compare_metadata  # noqa: F401
    from alembic.operations import Operations  # noqa: F401
    from alembic.runtime.environment import EnvironmentContext  # noqa: F401
    from alembic.script import ScriptDirectory  # noqa: F401

    scripts()  # the revisions, read once per process
    return command


def require_head(db_or_url: Database | str) -> None:
    """For ``auto_migrate`` off: refuse to run on a schema this release did not expect."""
    current, head = current_revision(db_or_url), _head()
    if current != head:
        raise SchemaError(
            f"the database schema is at revision {current or 'none'}, this release needs "
            f"{head}: run `jobchain db upgrade` (or set JOBCHAIN_AUTO_MIGRATE=1)"
        )


def differences(conn: Connection, target: MetaData) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match ``target``."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, target))


def new_revision(message: str) -> Path:
    """Write versions/NNNN_<message>.py, autogenerated from tables.py against head.

    The comparison runs on a scratch SQLite database; review the script (PostgreSQL-only
    details such as sequences are not seen from SQLite) and run the migration tests.
    """
    from alembic import command

    number = 1 + max(int(rev.revision[:4]) for rev in scripts().walk_revisions())
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    rev_id = f"{number:04d}_{slug}"[:_MAX_REVISION_ID].rstrip("_")
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'head.db'}", pool_size=1)
        try:
            upgrade(db)
            with _migration_lock(db) as conn:
                script = command.revision(
                    alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id
                )
        finally:
            db.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def _stamp_unversioned(conn: Connection, config: Config) -> None:
    """Adopt a database 0.1.0 created with create_all, if its tables are the baseline's."""
    from alembic import command
    from alembic.migration import MigrationContext

    if MigrationContext.configure(conn).get_current_revision() is not None:
        return
    present = set(inspect(conn).get_table_names())
    if not present - {"alembic_version"}:
        return
    baseline = scripts().get_revision(BASELINE).module.baseline()
    if not present & set(baseline.tables):
        return
    # Tables of other applications sharing the database are none of our business.
    diffs = [d for d in differences(conn, baseline) if d[0] != "remove_table"]
    if diffs:
        raise SchemaError(
            "the database has jobchain tables but no schema version, and they differ from "
            f"revision {BASELINE}: {diffs}"
        )
    log.info("tables without a schema version match %s (jobchain 0.1.0): stamped", BASELINE)
    command.stamp(config, BASELINE)


@contextmanager
def _alembic_errors() -> Iterator[None]:
    """Unknown revisions (a typo, or a database a newer release migrated) as SchemaError."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise SchemaError(f"{exc} (revisions of this release: `jobchain db history`)") from exc


@contextmanager
def _database(db_or_url: Database | str) -> Iterator[Database]:
    if isinstance(db_or_url, Database):
        yield db_or_url
        return
    db = Database(db_or_url, pool_size=1, listen_notify=False)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def _migration_lock(db: Database) -> Iterator[Connection]:
    """A connection in a transaction that no other migration runs beside; commits on exit."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            # Batch migrations copy a table and drop the old one; with foreign keys on, that
            # drop would cascade-delete the child rows. The pragma only works outside a
            # transaction, so it is set on the driver's connection before BEGIN.
            driver: Any = conn.connection.dbapi_connection
            driver.execute("PRAGMA foreign_keys=OFF")
            # Wait for another process's migration as long as a write would (SQLite's busy
            # handler), not the usual half-second: it may take seconds on a busy machine.
            busy_ms = driver.execute("PRAGMA busy_timeout").fetchone()[0]
            driver.execute(f"PRAGMA busy_timeout={int(db.wait_seconds * 1000)}")
            try:
                with conn.execution_options(**{WRITE_TRANSACTION: True}).begin():
                    yield conn
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaError(f"migration broke foreign keys: {broken}")
            finally:
                driver.execute(f"PRAGMA busy_timeout={busy_ms}")
                driver.execute("PRAGMA foreign_keys=ON")
        else:
            conn.execute(select(func.pg_advisory_lock(_LOCK_KEY)))
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.rollback()
                conn.execute(select(func.pg_advisory_unlock(_LOCK_KEY)))
                conn.commit()
