"""Alerts: notification rules, the deliveries they owe, the matcher's read cursors, and
schedule fires by chain (for rules filtered by schedule).

Revision ID: 0005_notifications
Revises: 0004_graphs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_notifications"
down_revision = "0004_graphs"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notification_rules",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("job_type", sa.String(64), nullable=True),
        sa.Column("target_object", sa.String(255), nullable=True),
        sa.Column("schedule", sa.String(255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("active_since", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "rule_id",
            Id,
            sa.ForeignKey("notification_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("event_kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("rule_id", "event_key", name="uq_notification_rule_event"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_due", "notification_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "notification_cursors",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_schedule_fires_root", "schedule_fires", ["root_job_id"])


def downgrade() -> None:
    op.drop_index("ix_schedule_fires_root", table_name="schedule_fires")
    op.drop_table("notification_cursors")
    op.drop_index("ix_notification_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_rules")
