"""Alerts and metrics of declarative automation: notification rules filter by model, and
indexes count late and held assets by model at scrape time.

Revision ID: 0008_asset_alerts
Revises: 0007_automation
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_asset_alerts"
down_revision = "0007_automation"
branch_labels = None
depends_on = None

INDEXES = {"ix_assets_late": "late_since", "ix_assets_held": "held_at"}


def upgrade() -> None:
    _alter_rules(lambda batch: batch.add_column(sa.Column("model", sa.String(100), nullable=True)))
    for name, column in INDEXES.items():
        op.create_index(name, "assets", ["model_id", column])


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="assets")
    _alter_rules(lambda batch: batch.drop_column("model"))


def _alter_rules(change: Callable[[Any], None]) -> None:
    """On SQLite the table is rebuilt (AUTOINCREMENT kept), so its DDL is that of tables.py;
    PostgreSQL alters it in place."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    rebuild: dict[str, Any] = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}}
    with op.batch_alter_table("notification_rules", **(rebuild if sqlite else {})) as batch:
        change(batch)
