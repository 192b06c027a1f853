"""Indexes for the admin console: jobs by type (newest first) and by creation time.

Revision ID: 0002_console_indexes
Revises: 0001_baseline
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002_console_indexes"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_type_id", "jobs", ["job_type", "id"])
    op.create_index("ix_jobs_created", "jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs")
    op.drop_index("ix_jobs_type_id", table_name="jobs")
