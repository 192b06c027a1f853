"""Retention of automation's rows, on both databases: old ticks with their requests, old
evaluations but each asset's latest, and old asset events go; versions stay."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import asset_versions, retention
from app.store.automation_tables import (
    asset_evaluations,
    asset_events,
    automation_requests,
    automation_ticks,
)
from tests.automation.support import Model


def _count(runtime: Runtime, table: object) -> int:
    with runtime.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_old_automation_rows_go_but_each_assets_latest_evaluation_stays(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("a", automation="reconcile", code_version="1")
    m.asset("b", "a", automation="reconcile")
    loop = m.loop()
    loop.run_once()
    m.settled()
    m.change("a", code_version="2")
    loop.run_once()
    m.settled()
    runtime.db.write(
        lambda conn: asset_versions.add_event(conn, m.model_id, m.ids["a"], "LATE", 1.0, "old")
    )
    assert _count(runtime, asset_evaluations) > 2
    versions = _count(runtime, asset_versions.asset_versions)
    assert retention.purge_automation(runtime.db, 3600, at=time.time()) == 1  # the old event
    removed = retention.purge_automation(runtime.db, 0, at=time.time() + 10)
    assert removed > 0
    assert _count(runtime, automation_ticks) == 0
    assert _count(runtime, automation_requests) == 0
    assert _count(runtime, asset_events) == 0
    assert _count(runtime, asset_evaluations) == 2  # the latest of a and of b
    assert _count(runtime, asset_versions.asset_versions) == versions
