"""Baseline: the schema of jobchain 0.1.0, which created it with ``metadata.create_all``.

The tables are written out here as they were, not imported from app/store/tables.py, so
this revision stays the same when tables.py moves on. ``baseline()`` is also what
app.store.schema compares an unversioned database against before stamping it.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def baseline() -> sa.MetaData:
    """The 0.1.0 schema as a fresh MetaData."""
    m = sa.MetaData()
    sa.Table(
        "jobs",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("root_id", Id, nullable=False),
        sa.Column("parent_id", Id, nullable=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("target_object", sa.String(255), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(255), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("execute_on_error", sa.Boolean, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("attempt_floor", sa.Integer, nullable=False),
        sa.Column("run_after", sa.Float, nullable=False),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("blocked_by", Id, nullable=True),
        sa.Column("join_id", Id, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("progress", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Index("ix_jobs_claim", "status", "run_after", "id"),
        sa.Index("ix_jobs_status_id", "status", "id"),
        sa.Index("ix_jobs_target_id", "target_object", "id"),
        sa.Index("ix_jobs_root_id", "root_id", "id"),
        sa.Index("ix_jobs_parent", "parent_id"),
        sa.Index("ix_jobs_blocked_by", "blocked_by"),
        sa.Index("ix_jobs_lease", "status", "lease_expires_at"),
        sa.Index("ix_jobs_join", "join_id"),
    )
    sa.Table(
        "job_events",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("job_id", Id, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Index("ix_job_events_job", "job_id", "id"),
    )
    sa.Table(
        "job_logs",
        m,
        sa.Column("job_id", Id, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("dropped_bytes", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "joins",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(600), nullable=False, unique=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("batch", sa.String(255), nullable=True),
        sa.Column("root_id", Id, nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("expected", sa.Integer, nullable=False),
        sa.Column("outcome_counts", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner_job_id", Id, nullable=True),
        sa.Column("next_jobs_digest", sa.String(64), nullable=True),
        sa.Column("deadline", sa.Float, nullable=True),
        sa.Column("decided_by_job_id", Id, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("decided_at", sa.Float, nullable=True),
        sa.Index("ix_joins_key_batch", "key", "batch", "id"),
        sa.Index("ix_joins_deadline", "state", "deadline"),
    )
    sa.Table(
        "join_arrivals",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("join_id", Id, sa.ForeignKey("joins.id", ondelete="CASCADE"), nullable=False),
        sa.Column("job_id", Id, nullable=False),
        sa.Column("parent_job_id", Id, nullable=True),
        sa.Column("parent_outcome", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("join_id", "job_id", name="uq_join_arrival"),
    )
    sa.Table(
        "api_tokens",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    sa.Table(
        "idempotency_keys",
        m,
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("job_id", Id, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Index("ix_idempotency_created", "created_at"),
    )
    sa.Table(
        "schedules",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_fire_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Index("ix_schedules_due", "enabled", "next_fire_at"),
    )
    sa.Table(
        "schedule_fires",
        m,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "schedule_id", Id, sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("fire_time", sa.Float, nullable=False),
        sa.Column("root_job_id", Id, nullable=True),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fire"),
    )
    return m


def upgrade() -> None:
    # The same DDL as 0.1.0's create_all (BIGSERIAL ids and their sequences on PostgreSQL).
    baseline().create_all(op.get_bind())


def downgrade() -> None:
    baseline().drop_all(op.get_bind())
