"""Runs of dependency graphs: runs, the assets each refreshes, cron fires of models.

A run is compiled into one ordinary chain; ``run_assets`` maps its asset jobs back to the
model, asset, run and batch (the job view names them), ``model_fires`` is the unique row
that makes a model's cron fire time start one run however many schedulers race for it,
and ``assets.next_fire_at`` is when an asset's cron fires next.

Revision ID: 0006_runs
Revises: 0005_notifications
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006_runs"
down_revision = "0005_notifications"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("batch", sa.String(255), nullable=False),
        sa.Column("batched", sa.Boolean, nullable=False),
        sa.Column("named", sa.JSON, nullable=False),
        sa.Column("downstream", sa.Boolean, nullable=False),
        sa.Column("force", sa.Boolean, nullable=False),
        sa.Column("root_job_id", Id, nullable=True),
        sa.Column("fire_time", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_model", "runs", ["model_id", "id"])
    op.create_index("ix_runs_model_batch", "runs", ["model_id", "batch", "id"])
    op.create_table(
        "run_assets",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", Id, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("asset_id", Id, nullable=False),
        sa.Column("asset", sa.String(100), nullable=False),
        sa.Column("batch", sa.String(255), nullable=False),
        sa.Column("job_id", Id, nullable=False),
        sa.Column("own", sa.Boolean, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("waits_for", sa.JSON, nullable=False),
    )
    op.create_index("ix_run_assets_run", "run_assets", ["run_id", "position"])
    op.create_index("ix_run_assets_job", "run_assets", ["job_id"])
    op.create_index("ix_run_assets_batch", "run_assets", ["model_id", "batch", "asset_id"])
    op.create_table(
        "model_fires",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("fire_time", sa.Float, nullable=False),
        sa.Column("run_id", Id, nullable=True),
        sa.Column("fired_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.UniqueConstraint("model_id", "fire_time", name="uq_model_fire"),
    )
    _alter_assets(lambda batch: batch.add_column(sa.Column("next_fire_at", sa.Float)))
    op.create_index("ix_assets_next_fire", "assets", ["next_fire_at"])


def _alter_assets(change: Callable[[Any], None]) -> None:
    """On SQLite the table is rebuilt, still AUTOINCREMENT, so its DDL is that of tables.py
    (ADD COLUMN would only append text); PostgreSQL alters it in place."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    kwargs: dict[str, Any] = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}}
    with op.batch_alter_table("assets", **(kwargs if sqlite else {})) as batch:
        change(batch)


def downgrade() -> None:
    op.drop_index("ix_assets_next_fire", "assets")
    _alter_assets(lambda batch: batch.drop_column("next_fire_at"))
    op.drop_table("model_fires")
    op.drop_table("run_assets")
    op.drop_table("runs")
