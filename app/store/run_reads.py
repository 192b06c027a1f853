"""Runs, reading: a run with its assets' jobs and what a waiting asset waits for, a model's
runs, a batch's task log, and which run a job refreshes an asset for.

A run's state is never stored: it is read from its assets' jobs, so it is the engine's
state (a retried job makes a failed run run again) and nothing can drift from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, select

from app.domain import runs as plans
from app.domain.statuses import TERMINAL, Status
from app.store.database import Database
from app.store.tables import jobs, models, run_assets, runs

RUNNING, SUCCEEDED, FAILED, CANCELLED = "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
RUN_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)
# The batch task log's statuses, from the job statuses behind them.
TASK_STATUS = {
    Status.WAITING_FOR_PARENT.value: "NEW",
    Status.WAITING_FOR_DISPATCH.value: "NEW",
    Status.PROCESSING.value: "PROCESSING",
    Status.FINISHED.value: "SUCCESS",
    Status.FAILED.value: "ERROR",
    Status.CANCELLED.value: "ERROR",
    Status.SKIPPED.value: "ERROR",
}
_TERMINAL = {s.value for s in TERMINAL}


def run_state(statuses: Iterable[str | None]) -> str:
    """RUNNING while any asset's job has not ended; then FAILED if any failed or was
    skipped, CANCELLED if any was cancelled, else SUCCEEDED. A purged job counts as ended."""
    found = {s for s in statuses if s is not None}
    if found - _TERMINAL:
        return RUNNING
    if found & {Status.FAILED.value, Status.SKIPPED.value}:
        return FAILED
    if Status.CANCELLED.value in found:
        return CANCELLED
    return SUCCEEDED


def _asset_rows(conn: Connection, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    query = (
        select(
            run_assets.c.run_id,
            run_assets.c.model_id,
            run_assets.c.asset,
            run_assets.c.batch,
            run_assets.c.job_id,
            run_assets.c.own,
            run_assets.c.waits_for,
            jobs.c.status,
            jobs.c.started_at,
            jobs.c.finished_at,
            jobs.c.message,
        )
        .select_from(run_assets.outerjoin(jobs, jobs.c.id == run_assets.c.job_id))
        .where(run_assets.c.run_id.in_(run_ids))
        .order_by(run_assets.c.run_id, run_assets.c.position)
    )
    found: dict[int, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    for row in conn.execute(query).mappings():
        found[row["run_id"]].append(dict(row))
    return found


def _explain_waits(conn: Connection, model_id: int, rows: list[dict[str, Any]]) -> None:
    """Set ``waiting_for`` on each asset still waiting for upstreams: those of its
    (upstream, batch) pairs whose latest refresh in that batch has not succeeded."""
    waiting = [r for r in rows if r["status"] == Status.WAITING_FOR_PARENT.value]
    for row in rows:
        row["waiting_for"] = None
    pairs = {(up, batch) for r in waiting for up, batch in r["waits_for"]}
    if not pairs:
        return
    query = (
        select(run_assets.c.asset, run_assets.c.batch, jobs.c.status)
        .select_from(run_assets.outerjoin(jobs, jobs.c.id == run_assets.c.job_id))
        .where(
            run_assets.c.model_id == model_id,
            run_assets.c.own.is_(True),
            run_assets.c.batch.in_({batch for _, batch in pairs}),
        )
        .order_by(run_assets.c.id)
    )
    latest = {(r.asset, r.batch): r.status for r in conn.execute(query)}
    for row in waiting:
        pending = [
            (up, batch)
            for up, batch in row["waits_for"]
            if latest.get((up, batch)) != Status.FINISHED.value
        ]
        row["waiting_for"] = plans.waiting_message(pending)


def _runs(conn: Connection, where: Any) -> list[dict[str, Any]]:
    query = select(runs).where(where).order_by(runs.c.id)
    found = [dict(r) for r in conn.execute(query).mappings()]
    by_run = _asset_rows(conn, [r["id"] for r in found])
    for run in found:
        run["assets"] = by_run[run["id"]]
        run["state"] = run_state(a["status"] for a in run["assets"])
    return found


def get_run(db: Database, model_id: int, run_id: int) -> dict[str, Any] | None:
    """A run with its assets in refresh order: each one's job, status, start, end, and
    ``waiting_for``."""
    with db.read() as conn:
        found = _runs(conn, and_(runs.c.id == run_id, runs.c.model_id == model_id))
        if not found:
            return None
        _explain_waits(conn, model_id, found[0]["assets"])
    return found[0]


def list_runs(
    db: Database, model_id: int, batch: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """The model's runs, oldest first, optionally of one batch and in one state."""
    where = runs.c.model_id == model_id
    if batch is not None:
        where = and_(where, runs.c.batch == batch)
    with db.read() as conn:
        found = _runs(conn, where)
        for run in found:
            _explain_waits(conn, model_id, run["assets"])
    return [r for r in found if state is None or r["state"] == state]


def active_runs(conn: Connection, model_id: int) -> list[int]:
    """Ids of the model's runs with an asset job that has not ended."""
    query = (
        select(run_assets.c.run_id)
        .join(jobs, jobs.c.id == run_assets.c.job_id)
        .where(run_assets.c.model_id == model_id, jobs.c.status.not_in(_TERMINAL))
        .distinct()
        .order_by(run_assets.c.run_id)
    )
    return list(conn.execute(query).scalars())


def batch_log(db: Database, model_id: int, batch: str) -> list[dict[str, Any]] | None:
    """The batch's task log: per asset its latest job in the batch, the task status
    (NEW, PROCESSING, SUCCESS, ERROR) and the run that created it; None if the batch has
    no runs."""
    query = (
        select(
            run_assets.c.asset,
            run_assets.c.run_id,
            run_assets.c.job_id,
            jobs.c.status,
            jobs.c.started_at,
            jobs.c.finished_at,
        )
        .select_from(run_assets.outerjoin(jobs, jobs.c.id == run_assets.c.job_id))
        .where(
            run_assets.c.model_id == model_id,
            run_assets.c.batch == batch,
            run_assets.c.own.is_(True),
        )
        .order_by(run_assets.c.id)
    )
    with db.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if not rows:
        return None
    latest = {row["asset"]: row for row in rows}
    for row in latest.values():
        row["task_status"] = TASK_STATUS.get(row["status"] or "", "SUCCESS")
    return [latest[name] for name in sorted(latest)]


def job_asset(db: Database, job_id: int) -> dict[str, Any] | None:
    """Which model, asset, run and batch a job refreshes for, and why a reconciliation tick
    started it (None when run by hand or by cron); None if it refreshes no asset."""
    query = (
        select(
            run_assets.c.model_id,
            models.c.name.label("model"),
            run_assets.c.asset_id,
            run_assets.c.asset,
            run_assets.c.run_id,
            run_assets.c.batch,
            run_assets.c.reason,
        )
        .outerjoin(models, models.c.id == run_assets.c.model_id)
        .where(run_assets.c.job_id == job_id, run_assets.c.own.is_(True))
        .limit(1)
    )
    with db.read() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None
