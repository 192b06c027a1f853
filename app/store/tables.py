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
    UniqueConstraint,
    false,
)

metadata = MetaData()

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Ids are never reused. PostgreSQL's sequences never go back; SQLite hands out max(id) + 1
# unless the table is AUTOINCREMENT (sqlite_autoincrement=True), so once retention deleted
# the newest rows an old URL, a client-held id or a callback still inside its signature
# window would name another row. Every table whose ids leave the database (API, CLI) or are
# stored in other rows is AUTOINCREMENT; join_arrivals and schedule_fires keep plain rowids:
# their ids are never shown and no other row holds them.

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
    # For JOIN nodes: the join this node is an arrival of.
    Column("join_id", Id, nullable=True),
    # For JOIN nodes: the outcome this arrival stands for (its parent's end, or the upstream
    # join's decision), recorded when the node is released, never re-read later.
    Column("arrival_outcome", String(16), nullable=True),
    Column("message", Text, nullable=True),
    Column("result", JSON, nullable=True),
    Column("progress", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The latest attempt: its function's real start and end (the worker's stamps; an
    # EXTERNAL job ends with its callback), and its claim (it may wait in a worker's batch).
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("claimed_at", Float, nullable=True),
    Index("ix_jobs_claim", "status", "run_after", "id"),
    Index("ix_jobs_status_id", "status", "id"),
    Index("ix_jobs_target_id", "target_object", "id"),
    Index("ix_jobs_root_id", "root_id", "id"),
    Index("ix_jobs_parent", "parent_id"),
    Index("ix_jobs_blocked_by", "blocked_by"),
    Index("ix_jobs_lease", "status", "lease_expires_at"),
    Index("ix_jobs_join", "join_id"),
    # The admin console: filtering by job type, and a time range as an id range.
    Index("ix_jobs_type_id", "job_type", "id"),
    Index("ix_jobs_created", "created_at"),
    sqlite_autoincrement=True,
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
    # On an attempt's end event: its function's start and end (``at``: when recorded).
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index("ix_job_events_job", "job_id", "id"),
    sqlite_autoincrement=True,
)

# The bounded tail of each job's log (its logger and SHELL output), one row per job.
job_logs = Table(
    "job_logs",
    metadata,
    Column("job_id", Id, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("text", Text, nullable=False),
    Column("dropped_bytes", BigInteger, nullable=False, default=0),
)

# A fan-in point: the JOIN nodes sharing a key (within one tree, or across submissions by
# batch) are its arrivals; when the trigger rule is decided it fires exactly once.
joins = Table(
    "joins",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # "tree:<root id>:<key>" or "batch:<key>:<batch>": one join per scope.
    Column("scope", String(600), nullable=False, unique=True),
    Column("key", String(255), nullable=False),
    Column("batch", String(255), nullable=True),
    Column("root_id", Id, nullable=True),
    Column("trigger", String(16), nullable=False),
    Column("expected", Integer, nullable=False),
    # Arrivals by parent outcome, e.g. {"FINISHED": 2, "FAILED": 1}.
    Column("outcome_counts", JSON, nullable=False, default=dict),
    Column("state", String(16), nullable=False),
    # The JOIN node whose next jobs are the join's continuation, and their fingerprint.
    Column("owner_job_id", Id, nullable=True),
    Column("next_jobs_digest", String(64), nullable=True),
    Column("deadline", Float, nullable=True),
    Column("decided_by_job_id", Id, nullable=True),
    Column("message", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Index("ix_joins_key_batch", "key", "batch", "id"),
    Index("ix_joins_deadline", "state", "deadline"),
    sqlite_autoincrement=True,
)

join_arrivals = Table(
    "join_arrivals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("join_id", Id, ForeignKey("joins.id", ondelete="CASCADE"), nullable=False),
    # The JOIN node job that arrived, and the parent whose outcome it carries.
    Column("job_id", Id, nullable=False),
    Column("parent_job_id", Id, nullable=True),
    Column("parent_outcome", String(32), nullable=False),
    Column("at", Float, nullable=False),
    UniqueConstraint("join_id", "job_id", name="uq_join_arrival"),
)

# -- integration systems ----------------------------------------------------------------

# API tokens, stored as SHA-256 hashes of high-entropy secrets; role grants a set of calls.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    sqlite_autoincrement=True,
)

# Idempotency-Key of a submission: the same key with the same body returns the same job.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("body_hash", String(64), nullable=False),
    Column("job_id", Id, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_idempotency_created", "created_at"),
)

# Cron schedules: each fire time submits the payload once (schedule_fires is the guard).
schedules = Table(
    "schedules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("cron", String(255), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_fire_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_schedules_due", "enabled", "next_fire_at"),
    sqlite_autoincrement=True,
)

schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("schedule_id", Id, ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
    Column("fire_time", Float, nullable=False),
    Column("root_job_id", Id, nullable=True),
    Column("fired_at", Float, nullable=False),
    # Why a fire started no chain (its payload no longer validates), else NULL.
    Column("message", Text, nullable=True),
    UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fire"),
    # Alerts filtered by schedule: which schedule started a chain (0004).
    Index("ix_schedule_fires_root", "root_job_id"),
)

# -- dependency graphs -------------------------------------------------------------------

# A model: a named graph of assets. Graph changes lock its row (app/store/graph_changes.py).
models = Table(
    "models",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

# An asset: what one job (a single ChainedJobInfo node, stored as submitted) refreshes.
assets = Table(
    "assets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text, nullable=True),
    Column("job", JSON, nullable=True),  # NULL for a source (observed, not computed)
    Column("cron", String(255), nullable=True),
    Column("timezone", String(64), nullable=False),
    # The root job of the asset's latest refresh (set by runs); refreshing while not terminal.
    Column("last_job_id", Id, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # When the asset's cron fires next (NULL: no cron, or not computed yet by a scheduler).
    Column("next_fire_at", Float, nullable=True),
    # Declarative automation (app/domain/freshness.py, app/store/automation.py).
    Column("kind", String(16), nullable=False, server_default="job"),
    Column("automation", String(16), nullable=False, server_default="off"),
    Column("freshness", JSON, nullable=True),
    Column("code_version", String(255), nullable=True),
    Column("observe", JSON, nullable=True),
    Column("current_version_id", Id, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("held_at", Float, nullable=True),
    Column("held_error", Text, nullable=True),
    Column("late_since", Float, nullable=True),
    # When a tick must look at the asset on its own (a deadline, an observation due).
    Column("next_evaluation_at", Float, nullable=True),
    UniqueConstraint("model_id", "name", name="uq_asset_name"),
    Index("ix_assets_next_fire", "next_fire_at"),
    Index("ix_assets_next_evaluation", "model_id", "next_evaluation_at"),
    Index("ix_assets_updated", "model_id", "updated_at"),  # a tick: changed since the last
    # /metrics counts late and held assets by model (0008): partial, so they stay tiny.
    # Late and held assets by model (metrics). Plain indexes: a postgresql_where here would
    # load SQLAlchemy's PostgreSQL dialect into every process, SQLite workers included.
    Index("ix_assets_late", "model_id", "late_since"),
    Index("ix_assets_held", "model_id", "held_at"),
    sqlite_autoincrement=True,
)

# "downstream depends on upstream": the downstream's refresh waits for the upstream's.
asset_dependencies = Table(
    "asset_dependencies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("upstream_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("downstream_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("upstream_id", "downstream_id", name="uq_asset_dependency"),
    Index("ix_asset_dependencies_model", "model_id", "id"),
    Index("ix_asset_dependencies_downstream", "downstream_id"),
    sqlite_autoincrement=True,
)

# A run of a model: one chain refreshing some of its assets (app/store/runs.py). ``batch``
# is the given batch, or "run-<id>" for a refresh (``batched`` false).
runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("batch", String(255), nullable=False),
    Column("batched", Boolean, nullable=False),
    Column("named", JSON, nullable=False),
    Column("downstream", Boolean, nullable=False),
    Column("force", Boolean, nullable=False),
    Column("root_job_id", Id, nullable=True),
    # Set for a run started by the assets' cron: the fire time it serves.
    Column("fire_time", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    # Set for a run a reconciliation tick started (app/store/automation.py).
    Column("tick_id", Id, nullable=True),
    Index("ix_runs_model", "model_id", "id"),
    Index("ix_runs_model_batch", "model_id", "batch", "id"),
    sqlite_autoincrement=True,
)

# The assets a run refreshes: the job of each (``own``: in this run's chain; else the job
# an earlier run of the same batch created) and what it waits for, as (asset, batch) pairs.
run_assets = Table(
    "run_assets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("model_id", Id, nullable=False),
    Column("asset_id", Id, nullable=False),
    Column("asset", String(100), nullable=False),
    Column("batch", String(255), nullable=False),
    Column("job_id", Id, nullable=False),
    Column("own", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
    Column("waits_for", JSON, nullable=False),
    # Automation: why a tick refreshes it, the code version it ran, whether its end is
    # recorded (as a version or a failure: app/store/asset_versions.py).
    Column("reason", Text, nullable=True),
    Column("code_version", String(255), nullable=True),
    Column("settled", Boolean, nullable=False, server_default=false()),
    Index("ix_run_assets_run", "run_id", "position"),
    Index("ix_run_assets_settled", "model_id", "settled"),
    Index("ix_run_assets_job", "job_id"),
    Index("ix_run_assets_batch", "model_id", "batch", "asset_id"),
)

# A model's cron fire time served: the unique row makes it start one run, whoever fires it.
model_fires = Table(
    "model_fires",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("fire_time", Float, nullable=False),
    Column("run_id", Id, nullable=True),
    Column("fired_at", Float, nullable=False),
    Column("message", Text, nullable=True),
    UniqueConstraint("model_id", "fire_time", name="uq_model_fire"),
)

from app.store import automation_tables as _automation_tables  # noqa: E402, F401
from app.store import notification_tables as _notification_tables  # noqa: E402, F401
