"""Ids are never reused on SQLite either (AUTOINCREMENT), and jobs.arrival_outcome.

SQLite gives a new row max(id) + 1, so once retention had deleted the newest chains their
ids came back for new jobs. AUTOINCREMENT is part of CREATE TABLE: on SQLite the tables whose
ids leave the database or are held by other rows (jobs, job_events, joins, api_tokens,
schedules) are rebuilt with it, every row, index and constraint kept, and the counter of
each (sqlite_sequence) is set above every id present, its own and those other rows hold.
PostgreSQL's sequences never went back: there only the column is added.

Revision ID: 0003_unique_ids_arrival_outcome
Revises: 0002_console_indexes
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_unique_ids_arrival_outcome"
down_revision = "0002_console_indexes"
branch_labels = None
depends_on = None

# Each rebuilt table, and the (table, column) pairs besides its own id that hold its ids.
NEVER_REUSED: dict[str, list[tuple[str, str]]] = {
    "jobs": [
        ("jobs", "root_id"),
        ("jobs", "parent_id"),
        ("jobs", "blocked_by"),
        ("job_events", "job_id"),
        ("job_logs", "job_id"),
        ("joins", "root_id"),
        ("joins", "owner_job_id"),
        ("joins", "decided_by_job_id"),
        ("join_arrivals", "job_id"),
        ("join_arrivals", "parent_job_id"),
        ("idempotency_keys", "job_id"),
        ("schedule_fires", "root_job_id"),
    ],
    "job_events": [],
    "joins": [("jobs", "join_id"), ("join_arrivals", "join_id")],
    "api_tokens": [],
    "schedules": [("schedule_fires", "schedule_id")],
}


def arrival_outcome() -> sa.Column[str]:
    return sa.Column("arrival_outcome", sa.String(16), nullable=True)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.add_column("jobs", arrival_outcome())
        _backfill_arrival_outcomes()
        return
    for name in NEVER_REUSED:
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            if name == "jobs":
                batch.add_column(arrival_outcome(), insert_after="join_id")
    for name, holders in NEVER_REUSED.items():
        _seed_sequence(bind, name, [(name, "id"), *holders])
    _backfill_arrival_outcomes()


def _backfill_arrival_outcomes() -> None:
    """JOIN nodes released before this revision carry their parent's end, as release
    now records it (their parent cannot move on until they have arrived)."""
    op.execute(
        "UPDATE jobs SET arrival_outcome = "
        "(SELECT parent.status FROM jobs AS parent WHERE parent.id = jobs.parent_id) "
        "WHERE join_id IS NOT NULL AND status = 'WAITING_FOR_DISPATCH'"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_column("jobs", "arrival_outcome")
        return
    # Dropping an AUTOINCREMENT table drops its sqlite_sequence row too.
    for name in NEVER_REUSED:
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ) as batch:
            if name == "jobs":
                batch.drop_column("arrival_outcome")


def _seed_sequence(bind: sa.Connection, table: str, columns: list[tuple[str, str]]) -> None:
    """Set the table's AUTOINCREMENT counter to the highest of its ids found anywhere.

    Copying the rows already moved it to max(id); ids only other rows still hold (of rows
    deleted since) go above that.
    """
    highest = " UNION ALL ".join(f"SELECT max({c}) AS id FROM {t}" for t, c in columns)
    top = bind.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM ({highest})").scalar_one()
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
    if top:
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
            {"t": table, "seq": top},
        )
