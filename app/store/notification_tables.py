"""Tables of alerts (app/alerts): notification rules, the deliveries they owe and the
matcher's read cursors.

They share ``tables.metadata`` (``tables`` imports this module at its end), so migrations,
schema checks and the tests see one schema.
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
    String,
    Table,
    Text,
    UniqueConstraint,
)

from app.store.tables import Id, metadata

# Alerts (app/alerts): what to tell whom, and each notification owed. One delivery per
# (rule, event), whatever number of processes match events at once.
notification_rules = Table(
    "notification_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    # Event kinds, e.g. ["job_failed", "lease_expired"] (app/alerts/events.py).
    Column("events", JSON, nullable=False),
    # "webhook" (target: a URL) or "email" (target: comma-separated addresses).
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    # Filters; NULL matches anything. target_object may end with "*" (a prefix).
    Column("job_type", String(64), nullable=True),
    Column("target_object", String(255), nullable=True),
    Column("schedule", String(255), nullable=True),
    Column("enabled", Boolean, nullable=False),
    # Events before this (creation, or the last time it was enabled) are not its business.
    Column("active_since", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # A model's name: its assets' events (0008; last, where the migration adds it).
    Column("model", String(100), nullable=True),
    sqlite_autoincrement=True,
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule_id", Id, ForeignKey("notification_rules.id", ondelete="CASCADE"), nullable=False),
    # What happened, e.g. "job_event:123", "join:7:1733390000.5", "fire:42".
    Column("event_key", String(255), nullable=False),
    Column("event_kind", String(32), nullable=False),
    # The notification as sent (JSON body of a webhook, the facts of an e-mail).
    Column("payload", JSON, nullable=False),
    # pending -> delivered, or failed once every attempt was spent.
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    # A dispatcher holds a claim while it sends; an expired claim may be taken over.
    Column("claim_token", String(36), nullable=True),
    Column("claimed_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    UniqueConstraint("rule_id", "event_key", name="uq_notification_rule_event"),
    Index("ix_notification_due", "status", "next_attempt_at"),
    sqlite_autoincrement=True,
)

# How far the alert matcher has read a source (job_events, schedule_fires, asset_events),
# and the ids below that not yet seen: a PostgreSQL transaction may commit a lower id after
# a higher one.
notification_cursors = Table(
    "notification_cursors",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    # [[id, first noticed missing at], ...]: re-read until found or too old to come.
    Column("gaps", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)
