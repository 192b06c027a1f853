"""One reconciliation tick of a model, in one transaction.

The tick takes the model's lock, then looks for its slot's row (``automation_ticks``,
unique per model and slot of ``tick_seconds``): any number of processes may tick, and each
slot is evaluated once. Everything the tick decides (the versions it settles, the run it
starts, its requests, evaluations and late events) commits with that row or not at all, so
a process killed mid-tick loses nothing and doubles nothing: the next tick does the work.

A tick evaluates only candidates: assets with a new version or a change since the last
tick, assets whose own time has come (``next_evaluation_at``), and everything downstream
of them. With none, it writes nothing (an idle tick is a handful of indexed reads).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update

from app.domain import graphs as graph_rules
from app.domain.freshness import RECONCILE, Asset
from app.domain.reconcile import Evaluation, plan_tick
from app.failpoints import failpoint
from app.store import asset_versions as versions
from app.store import settling
from app.store.automation_tables import asset_evaluations, automation_requests, automation_ticks
from app.store.database import Database
from app.store.graphs import lock_model
from app.store.runs import BuildChain, RunRequest, store_run
from app.store.tables import assets

_V = versions.asset_versions.c


@dataclass(frozen=True)
class TickSettings:
    tick_seconds: float
    max_failures: int
    owner: str


@dataclass(frozen=True)
class TickResult:
    model_id: int
    tick_id: int
    evaluated: int
    requested: list[str]
    run_id: int | None
    duration_ms: float


def slot_of(at: float, tick_seconds: float) -> int:
    return int(at // tick_seconds)


def tick_model(
    conn: Connection,
    model_id: int,
    at: float,
    settings: TickSettings,
    build: BuildChain,
    clock: Callable[[], float] = time.perf_counter,
) -> TickResult | None:
    """Evaluate the model's tick of ``at``; None when another process did, or when there
    was nothing to evaluate."""
    started = clock()
    if not lock_model(conn, model_id):
        return None
    slot = slot_of(at, settings.tick_seconds)
    seeds = _seeds(conn, model_id, at, slot)
    if seeds is None:
        return None  # another process ticked this slot
    seeds |= settling.settle(conn, model_id, at, settings.max_failures)
    if not seeds:
        return None
    watermark = conn.execute(select(func.max(_V.id)).where(_V.model_id == model_id)).scalar()
    state = versions.load_state(conn, model_id)
    names = {asset_id: name for name, asset_id in state.ids.items()}
    edges = [(up, down) for down, a in state.assets.items() for up in a.upstreams]
    reached = graph_rules.with_descendants(edges, (names[i] for i in seeds if i in names))
    # Only what automation decides on: assets under reconcile or with a policy to watch.
    candidates = {n for n in reached if _watched(state.assets[n])}
    if not candidates:
        return None  # what it settled commits; no tick to record
    plan = plan_tick(state.assessment(), state.standing, candidates, at, settings.tick_seconds)
    tick_id: int = conn.execute(
        insert(automation_ticks)
        .values(
            model_id=model_id,
            slot=slot,
            started_at=at,
            duration_ms=0.0,
            evaluated=len(plan.evaluations),
            requested=len(plan.requests),
            watermark=watermark or 0,
            owner=settings.owner[:128],
        )
        .returning(automation_ticks.c.id)
    ).scalar_one()
    run_id = None
    if plan.requests:
        request = RunRequest(
            assets=list(plan.requests), downstream=False, reasons=plan.requests, tick_id=tick_id
        )
        run_id = store_run(conn, model_id, request, build)
        conn.execute(
            insert(automation_requests),
            [
                {
                    "model_id": model_id,
                    "tick_id": tick_id,
                    "asset_id": state.ids[name],
                    "run_id": run_id,
                    "reason": reason,
                }
                for name, reason in plan.requests.items()
            ],
        )
    _store_evaluations(conn, model_id, tick_id, at, state, plan.evaluations)
    failpoint("automation.tick.before_commit")  # the crash tests' kill point
    duration_ms = (clock() - started) * 1000
    conn.execute(
        update(automation_ticks)
        .where(automation_ticks.c.id == tick_id)
        .values(run_id=run_id, duration_ms=duration_ms)
    )
    return TickResult(
        model_id, tick_id, len(plan.evaluations), list(plan.requests), run_id, duration_ms
    )


def _watched(asset: Asset) -> bool:
    return asset.automation == RECONCILE or asset.policy is not None


def pending(db: Database, model_id: int, at: float, tick_seconds: float) -> bool:
    """Whether the model's tick of ``at`` may have work, read without a lock: an idle tick
    stays out of the writers' way (the tick itself checks again under the model's lock)."""
    with db.read() as conn:
        seeds = _seeds(conn, model_id, at, slot_of(at, tick_seconds))
        return seeds is not None and (bool(seeds) or settling.unsettled(conn, model_id))


def _seeds(conn: Connection, model_id: int, at: float, slot: int) -> set[int] | None:
    """Assets with a new version or a change since the model's last tick, and those whose
    own time has come; every asset at its first tick. None if this slot was ticked."""
    t = automation_ticks.c
    if conn.execute(select(t.id).where(t.model_id == model_id, t.slot == slot)).first():
        return None
    last = conn.execute(
        select(t.started_at, t.watermark)
        .where(t.model_id == model_id)
        .order_by(t.id.desc())
        .limit(1)
    ).first()
    a = assets.c
    if last is None:
        return set(conn.execute(select(a.id).where(a.model_id == model_id)).scalars())
    queries = [
        select(_V.asset_id).where(_V.model_id == model_id, _V.id > last.watermark),
        select(a.id).where(a.model_id == model_id, a.updated_at > last.started_at),
        select(a.id).where(a.model_id == model_id, a.next_evaluation_at <= at, a.kind == "job"),
    ]
    return {asset_id for query in queries for asset_id in conn.execute(query).scalars()}


def _store_evaluations(
    conn: Connection,
    model_id: int,
    tick_id: int,
    at: float,
    state: versions.ModelState,
    evaluations: dict[str, Evaluation],
) -> None:
    """Keep each evaluation whose result differs from the asset's last one; move late
    episodes on (one LATE and one RECOVERED event each) and the next evaluation time."""
    e = asset_evaluations.c
    ids = [state.ids[name] for name in evaluations]
    latest = (
        select(func.max(e.id)).where(e.asset_id.in_(ids)).group_by(e.asset_id).scalar_subquery()
    )
    last = {
        r.asset_id: r.signature
        for r in conn.execute(select(e.asset_id, e.signature).where(e.id.in_(latest)))
    }
    rows = []
    for name, evaluation in evaluations.items():
        asset_id, row = state.ids[name], state.rows[name]
        signature = evaluation.signature()
        if last.get(asset_id) != signature:
            rows.append(
                {
                    "model_id": model_id,
                    "asset_id": asset_id,
                    "tick_id": tick_id,
                    "at": at,
                    "requested": evaluation.requested,
                    "signature": signature,
                    "conditions": evaluation.as_json(),
                }
            )
        if row.kind != "job":
            continue
        values: dict[str, object] = {"next_evaluation_at": evaluation.next_evaluation}
        lateness = evaluation.lateness
        if lateness is not None and lateness.late and row.late_since is None:
            values["late_since"] = lateness.deadline
            versions.add_event(
                conn,
                model_id,
                asset_id,
                "LATE",
                at,
                f"{name} late against its freshness policy since {_iso(lateness.deadline or at)}",
            )
        elif row.late_since is not None and (lateness is None or not lateness.late):
            values["late_since"] = None
            versions.add_event(
                conn,
                model_id,
                asset_id,
                "RECOVERED",
                at,
                f"{name} meets its freshness policy again "
                f"(late for {round(at - row.late_since)} s)",
            )
        if values != {"next_evaluation_at": row.next_evaluation_at}:
            conn.execute(update(assets).where(assets.c.id == asset_id).values(values))
    if rows:
        conn.execute(insert(asset_evaluations), rows)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
