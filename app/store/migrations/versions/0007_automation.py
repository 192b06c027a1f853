"""Declarative automation: what assets declare (kind, automation, freshness, code version,
observer), their versions, reconciliation ticks and requests, evaluations and late
episodes; a source asset has no job.

Revision ID: 0007_automation
Revises: 0006_runs
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007_automation"
down_revision = "0006_runs"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ASSET_COLUMNS = [
    sa.Column("kind", sa.String(16), nullable=False, server_default="job"),
    sa.Column("automation", sa.String(16), nullable=False, server_default="off"),
    sa.Column("freshness", sa.JSON, nullable=True),
    sa.Column("code_version", sa.String(255), nullable=True),
    sa.Column("observe", sa.JSON, nullable=True),
    sa.Column("current_version_id", Id, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("held_at", sa.Float, nullable=True),
    sa.Column("held_error", sa.Text, nullable=True),
    sa.Column("late_since", sa.Float, nullable=True),
    sa.Column("next_evaluation_at", sa.Float, nullable=True),
]


def upgrade() -> None:
    def assets(batch: Any) -> None:
        batch.alter_column("job", existing_type=sa.JSON, nullable=True)
        for column in ASSET_COLUMNS:
            batch.add_column(column)

    _alter("assets", assets)
    op.create_index("ix_assets_next_evaluation", "assets", ["model_id", "next_evaluation_at"])
    op.create_index("ix_assets_updated", "assets", ["model_id", "updated_at"])

    def run_assets(batch: Any) -> None:
        batch.add_column(sa.Column("reason", sa.Text, nullable=True))
        batch.add_column(sa.Column("code_version", sa.String(255), nullable=True))
        batch.add_column(
            sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.false())
        )

    _alter("run_assets", run_assets, autoincrement=False)
    op.create_index("ix_run_assets_settled", "run_assets", ["model_id", "settled"])
    _alter("runs", lambda b: b.add_column(sa.Column("tick_id", Id, nullable=True)))
    _create_tables()


def _create_tables() -> None:
    op.create_table(
        "asset_versions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("asset_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("job_id", Id, nullable=True),
        sa.Column("run_id", Id, nullable=True),
        sa.Column("data_version", sa.String(255), nullable=False),
        sa.Column("code_version", sa.String(255), nullable=True),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("arrived_at", sa.Float, nullable=False),
        sa.Column("run_seconds", sa.Float, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_asset_versions_asset", "asset_versions", ["asset_id", "id"])
    op.create_index("ix_asset_versions_model", "asset_versions", ["model_id", "id"])
    op.create_index("ix_asset_versions_job", "asset_versions", ["job_id"])
    op.create_table(
        "automation_ticks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("slot", Id, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("evaluated", sa.Integer, nullable=False),
        sa.Column("requested", sa.Integer, nullable=False),
        sa.Column("run_id", Id, nullable=True),
        sa.Column("watermark", Id, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.UniqueConstraint("model_id", "slot", name="uq_automation_tick"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_automation_ticks_model", "automation_ticks", ["model_id", "id"])
    op.create_table(
        "automation_requests",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column(
            "tick_id",
            Id,
            sa.ForeignKey("automation_ticks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("asset_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("tick_id", "asset_id", name="uq_automation_request"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "asset_evaluations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("asset_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tick_id", Id, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("requested", sa.Boolean, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("conditions", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_asset_evaluations_asset", "asset_evaluations", ["asset_id", "id"])
    op.create_table(
        "asset_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("asset_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_asset_events_model", "asset_events", ["model_id", "id"])
    op.create_index("ix_asset_events_asset", "asset_events", ["asset_id", "id"])


def _alter(table: str, change: Callable[[Any], None], autoincrement: bool = True) -> None:
    """On SQLite the table is rebuilt (keeping AUTOINCREMENT where tables.py has it), so
    its DDL is that of tables.py; PostgreSQL alters it in place."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    kwargs: dict[str, Any] = {"recreate": "always"}
    if autoincrement:
        kwargs["table_kwargs"] = {"sqlite_autoincrement": True}
    with op.batch_alter_table(table, **(kwargs if sqlite else {})) as batch:
        change(batch)


def downgrade() -> None:
    for name in ("asset_events", "asset_evaluations", "automation_requests"):
        op.drop_table(name)
    op.drop_table("automation_ticks")
    op.drop_table("asset_versions")
    _alter("runs", lambda b: b.drop_column("tick_id"))
    op.drop_index("ix_run_assets_settled", "run_assets")

    def run_assets(batch: Any) -> None:
        for name in ("settled", "code_version", "reason"):
            batch.drop_column(name)

    _alter("run_assets", run_assets, autoincrement=False)
    op.drop_index("ix_assets_updated", "assets")
    op.drop_index("ix_assets_next_evaluation", "assets")

    def assets(batch: Any) -> None:
        for column in reversed(ASSET_COLUMNS):
            batch.drop_column(column.name)
        batch.alter_column("job", existing_type=sa.JSON, nullable=False)

    _alter("assets", assets)
