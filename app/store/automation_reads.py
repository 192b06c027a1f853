"""Reading declarative automation: each asset's status against the rules, its refreshes
with their reasons, its evaluations, the model's ticks; and the writes an operator or an
integration system makes by hand (observations, releasing a hold).

A read first records refreshes that ended since the last tick (``settle``), so the
status it shows is never a tick behind the jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from app.domain import freshness as rules
from app.store import asset_versions as versions
from app.store import settling
from app.store.automation_tables import asset_evaluations, asset_events, automation_ticks
from app.store.database import Database
from app.store.graphs import lock_model
from app.store.tables import assets, jobs, run_assets


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: int | None  # pass back as ``cursor`` for the next (older) page


def page_of(db: Database, query: Any, key: Any, cursor: int | None, limit: int) -> Page:
    """Newest first, keyset-paginated on ``key`` (an id column)."""
    if cursor is not None:
        query = query.where(key < cursor)
    with db.read() as conn:
        rows = [
            dict(r) for r in conn.execute(query.order_by(key.desc()).limit(limit + 1)).mappings()
        ]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1]["id"] if more else None)


def settle_now(db: Database, model_id: int, max_failures: int) -> None:
    """Record ended refreshes now (a write only when there is one)."""
    if unsettled_any(db, model_id):

        def work(conn: Connection) -> None:
            if lock_model(conn, model_id):
                settling.settle(conn, model_id, time.time(), max_failures)

        db.write(work)


def unsettled_any(db: Database, model_id: int) -> bool:
    """Whether a refresh of the model has ended and is not recorded yet."""
    with db.read() as conn:
        return settling.unsettled(conn, model_id)


def annotate(db: Database, model_id: int, rows: list[dict[str, Any]], now: float) -> None:
    """Add each asset's automation view to its row (as ``graphs.list_assets`` gives it)."""
    with db.read() as conn:
        state = versions.load_state(conn, model_id)
        assessment = state.assessment()
        for row in rows:
            row.update(asset_view(state, assessment, row["name"], now))


def asset_view(
    state: versions.ModelState, assessment: rules.Assessment, name: str, now: float
) -> dict[str, Any]:
    asset, row = state.assets[name], state.rows[name]
    status = assessment.status(name)
    lateness = assessment.lateness(name, now)
    since = assessment.missing_since(name) if asset.current is not None else None
    return {
        "status": status.status,
        "causes": [c.as_json() for c in status.causes],
        "data_version": asset.current.data_version if asset.current else None,
        "current_data_time": None if asset.current is None else (since or now),
        "late": bool(lateness and lateness.late),
        "late_by": lateness.late_by if lateness else 0.0,
        "next_deadline": lateness.deadline if lateness else None,
        "held": row.held_at is not None,
        "held_at": row.held_at,
        "held_error": row.held_error,
        "failures": row.failures,
    }


def refreshes(db: Database, asset_id: int, cursor: int | None, limit: int) -> Page:
    """The asset's refreshes, newest first: job, run, times, status, data version, reason."""
    ra = run_assets.c
    query = (
        select(
            ra.id,
            ra.job_id,
            ra.run_id,
            ra.reason,
            jobs.c.status,
            jobs.c.started_at,
            jobs.c.finished_at,
            versions.asset_versions.c.data_version,
        )
        .select_from(
            run_assets.outerjoin(jobs, jobs.c.id == ra.job_id).outerjoin(
                versions.asset_versions, versions.asset_versions.c.job_id == ra.job_id
            )
        )
        .where(ra.asset_id == asset_id, ra.own.is_(True))
    )
    return page_of(db, query, ra.id, cursor, limit)


def evaluations(db: Database, asset_id: int, cursor: int | None, limit: int) -> Page:
    e = asset_evaluations.c
    query = select(e.id, e.tick_id, e.at, e.requested, e.conditions).where(e.asset_id == asset_id)
    return page_of(db, query, e.id, cursor, limit)


def ticks(db: Database, model_id: int, cursor: int | None, limit: int) -> Page:
    t = automation_ticks.c
    query = select(
        t.id, t.started_at, t.duration_ms, t.evaluated, t.requested, t.run_id, t.owner
    ).where(t.model_id == model_id)
    return page_of(db, query, t.id, cursor, limit)


def events(
    db: Database, model_id: int, asset_id: int | None, cursor: int | None, limit: int
) -> Page:
    ev = asset_events.c
    query = select(ev.id, ev.asset_id, assets.c.name.label("asset"), ev.kind, ev.at, ev.message)
    query = query.join(assets, assets.c.id == ev.asset_id).where(ev.model_id == model_id)
    if asset_id is not None:
        query = query.where(ev.asset_id == asset_id)
    return page_of(db, query, ev.id, cursor, limit)


def release(db: Database, model_id: int, asset_id: int) -> bool:
    """End the asset's hold; False if it was not held."""

    def work(conn: Connection) -> bool:
        lock_model(conn, model_id)
        return bool(versions.release_holds(conn, [asset_id], by="a release"))

    return db.write(work)


def record_observation(
    db: Database, model_id: int, asset_id: int, version: str, observed_at: float
) -> bool:
    """An integration system's observation of a source; True if it is new data."""
    return db.write(lambda conn: versions.observe(conn, model_id, asset_id, version, observed_at))
