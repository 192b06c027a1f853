"""Dependency graphs: models, their assets and the dependencies between assets.

The tables are written out here as they are at this revision, not imported from
app/store/tables.py, so this revision stays the same when tables.py moves on. Their ids
leave the database (API, CLI), so on SQLite they are AUTOINCREMENT from the start.

Revision ID: 0004_graphs
Revises: 0003_unique_ids_arrival_outcome
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_graphs"
down_revision = "0003_unique_ids_arrival_outcome"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "assets",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("job", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("last_job_id", Id, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("model_id", "name", name="uq_asset_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "asset_dependencies",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "upstream_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "downstream_id", Id, sa.ForeignKey("assets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("upstream_id", "downstream_id", name="uq_asset_dependency"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_asset_dependencies_model", "asset_dependencies", ["model_id", "id"])
    op.create_index("ix_asset_dependencies_downstream", "asset_dependencies", ["downstream_id"])


def downgrade() -> None:
    # Dropping an AUTOINCREMENT table drops its sqlite_sequence row too.
    op.drop_table("asset_dependencies")
    op.drop_table("assets")
    op.drop_table("models")
