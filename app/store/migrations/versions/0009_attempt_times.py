"""Times that say what happened: jobs.claimed_at, and each attempt's run on its end event.

``jobs.started_at`` and ``jobs.finished_at`` become when the job's function really started
and ended (a worker stamps them around the call); the claim keeps its own time in
``jobs.claimed_at``. The event that ends an attempt carries that attempt's run
(``job_events.started_at``, ``job_events.finished_at``), so every attempt of a retried job
can be drawn, not only the last. Rows written before this revision keep their times: their
``started_at`` was the claim, so it becomes their ``claimed_at`` too.

On SQLite both tables are rebuilt, still AUTOINCREMENT, so their DDL is that of tables.py
(ADD COLUMN would only append text), and each keeps its AUTOINCREMENT counter (dropping the
old table drops it; ids of deleted rows must not come back); PostgreSQL adds the nullable
columns in place.

Revision ID: 0009_attempt_times
Revises: 0008_asset_alerts
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_attempt_times"
down_revision = "0008_asset_alerts"
branch_labels = None
depends_on = None

NEW_COLUMNS = {"jobs": ["claimed_at"], "job_events": ["started_at", "finished_at"]}


def upgrade() -> None:
    for table, columns in NEW_COLUMNS.items():
        with _batch(table) as batch:
            for column in columns:
                batch.add_column(sa.Column(column, sa.Float, nullable=True))
    op.execute("UPDATE jobs SET claimed_at = started_at WHERE started_at IS NOT NULL")


def downgrade() -> None:
    for table, columns in NEW_COLUMNS.items():
        with _batch(table) as batch:
            for column in columns:
                batch.drop_column(column)


@contextmanager
def _batch(table: str) -> Iterator[Any]:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        with op.batch_alter_table(table) as batch:
            yield batch
        return
    counter = sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t")
    seq = bind.execute(counter, {"t": table}).scalar()
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        yield batch
    if seq is not None:
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        bind.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :seq)"),
            {"t": table, "seq": seq},
        )
