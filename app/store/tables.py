"""The database schema, written once for SQLite and PostgreSQL alike.

Times are UTC epoch seconds (floats): portable, cheap to compare, converted to ISO 8601
at the API edge.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("root_id", Id, nullable=False),
    Column("parent_id", Id, nullable=True),
    Column("position", Integer, nullable=False, default=0),
    Column("depth", Integer, nullable=False, default=0),
    Column("target_object", String(255), nullable=False),
    Column("job_type", String(64), nullable=False),
    Column("target_id", String(255), nullable=True),
    Column("parameters", JSON, nullable=False),
    Column("execute_on_error", Boolean, nullable=False, default=False),
    Column("max_attempts", Integer, nullable=False, default=1),
    Column("timeout_seconds", Float, nullable=True),
    Column("status", String(32), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    # Attempts started before the latest user retry; automatic retries count from here.
    Column("attempt_floor", Integer, nullable=False, default=0),
    # Claimable once status is WAITING_FOR_DISPATCH and run_after <= now (retry backoff).
    Column("run_after", Float, nullable=False),
    # The lease: who runs the job, until when, and the fencing token of this claim.
    Column("lease_token", String(36), nullable=True),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    # The job whose failure or cancellation skipped/cancelled this one (retry revives by it).
    Column("blocked_by", Id, nullable=True),
    Column("message", Text, nullable=True),
    Column("result", JSON, nullable=True),
    Column("progress", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index("ix_jobs_claim", "status", "run_after", "id"),
    Index("ix_jobs_status_id", "status", "id"),
    Index("ix_jobs_target_id", "target_object", "id"),
    Index("ix_jobs_root_id", "root_id", "id"),
    Index("ix_jobs_parent", "parent_id"),
    Index("ix_jobs_blocked_by", "blocked_by"),
    Index("ix_jobs_lease", "status", "lease_expires_at"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_job_events_job", "job_id", "id"),
)

# The bounded tail of each job's log (its logger and SHELL output), one row per job.
job_logs = Table(
    "job_logs",
    metadata,
    Column("job_id", Id, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("text", Text, nullable=False),
    Column("dropped_bytes", BigInteger, nullable=False, default=0),
)
