"""Tables of declarative automation: assets' versions, reconciliation ticks, what each tick
requested and why, evaluations kept where their result changed, and late episodes.

They share ``tables.metadata`` (``tables`` imports this module at its end), so migrations,
schema checks and the tests see one schema.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from app.store.tables import Id, metadata

# One version of an asset: a successful refresh, or a source's new observed data version.
asset_versions = Table(
    "asset_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("asset_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", Id, nullable=True),  # NULL for an observation
    Column("run_id", Id, nullable=True),
    Column("data_version", String(255), nullable=False),
    Column("code_version", String(255), nullable=True),
    # upstream name -> [its version id, its data version], as the refresh read them
    Column("inputs", JSON, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("arrived_at", Float, nullable=False),
    Column("run_seconds", Float, nullable=True),  # run created -> this refresh finished
    Index("ix_asset_versions_asset", "asset_id", "id"),
    Index("ix_asset_versions_model", "model_id", "id"),
    Index("ix_asset_versions_job", "job_id"),
    sqlite_autoincrement=True,
)

# A reconciliation tick of a model that evaluated something; unique per slot of time, so
# however many processes tick, each slot is evaluated once.
automation_ticks = Table(
    "automation_ticks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("slot", Id, nullable=False),  # at // tick_seconds
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("evaluated", Integer, nullable=False),
    Column("requested", Integer, nullable=False),
    Column("run_id", Id, nullable=True),
    Column("watermark", Id, nullable=False),  # the newest asset version it saw
    Column("owner", String(128), nullable=False),
    UniqueConstraint("model_id", "slot", name="uq_automation_tick"),
    Index("ix_automation_ticks_model", "model_id", "id"),
    sqlite_autoincrement=True,
)

# What a tick asked for: one row per asset and tick, with the reason.
automation_requests = Table(
    "automation_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("tick_id", Id, ForeignKey("automation_ticks.id", ondelete="CASCADE"), nullable=False),
    Column("asset_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", Id, nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("tick_id", "asset_id", name="uq_automation_request"),
    sqlite_autoincrement=True,
)

# An asset's evaluation by a tick, stored only when its result differs from the last one.
asset_evaluations = Table(
    "asset_evaluations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("asset_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("tick_id", Id, nullable=False),
    Column("at", Float, nullable=False),
    Column("requested", Boolean, nullable=False),
    Column("signature", Text, nullable=False),
    Column("conditions", JSON, nullable=False),
    Index("ix_asset_evaluations_asset", "asset_id", "id"),
    sqlite_autoincrement=True,
)

# LATE / RECOVERED (one each per episode), HELD / RELEASED, NEW_DATA of a source.
asset_events = Table(
    "asset_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, nullable=False),
    Column("asset_id", Id, ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_asset_events_model", "model_id", "id"),
    Index("ix_asset_events_asset", "asset_id", "id"),
    sqlite_autoincrement=True,
)
