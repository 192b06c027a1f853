"""Runs of a model: compiled into one ordinary chain, stored in one transaction.

The transaction takes the model's lock (so the graph, the batch's refreshes and the other
runs of the model stay as this run saw them), decides what the database decides (which
upstreams are refreshing right now, what the batch already refreshed), has the caller
build and check the chain (``BuildChain``: the submit service), stores it, hangs the
in-flight waits below the jobs they wait for, and records which job refreshes which asset.
The tree's shape is ``app.domain.runs``.

The in-flight wait is exact because the upstream's job row is locked (FOR UPDATE) while
this run checks it is not over and hangs a JOIN node below it: the job's end (a guarded
UPDATE of that row, releasing its children in the same transaction) happens either before
the check, and the run does not wait, or after the insert, and its release starts the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from app.domain import graphs as rules
from app.domain import runs as plans
from app.domain.join_plan import JoinPlan
from app.domain.payload import JobSpec, split_target
from app.domain.statuses import TERMINAL
from app.store import actions
from app.store.asset_versions import release_holds
from app.store.database import Database, now
from app.store.graph_changes import record_refreshes
from app.store.graphs import ModelNotFound, graph_edges, lock_model
from app.store.submission import attach_join_node, insert_tree_ids
from app.store.tables import assets, jobs, run_assets, runs

# A checked payload -> the tree to store and its joins (raises PayloadError, RoleDenied).
BuildChain = Callable[[Any], tuple[JobSpec, list[JoinPlan]]]
_TERMINAL = [s.value for s in TERMINAL]


@dataclass(frozen=True)
class RunRequest:
    assets: list[str] | None = None
    batch: str | None = None
    downstream: bool = True
    force: bool = False
    fire_time: float | None = None
    # A reconciliation tick's run: why each asset refreshes, and the tick.
    reasons: Mapping[str, str] | None = None
    tick_id: int | None = None


class AlreadyInBatch(Exception):
    """Named assets already refreshing or refreshed in the batch (HTTP 409)."""

    def __init__(self, batch: str, names: list[str]):
        super().__init__(f"already in batch {batch}: {', '.join(names)}")
        self.batch = batch
        self.names = names


class RunNotFound(Exception):
    """No run with this id in this model (HTTP 404)."""


def create_run(db: Database, model_id: int, request: RunRequest, build: BuildChain) -> int:
    """Store a run and its chain; returns the run's id. Raises ModelNotFound,
    plans.RunRefused, AlreadyInBatch, or whatever ``build`` raises; nothing is stored then."""
    run_id: int = db.write(lambda conn: store_run(conn, model_id, request, build))
    db.notify_dispatchable()
    return run_id


def store_run(conn: Connection, model_id: int, request: RunRequest, build: BuildChain) -> int:
    """:func:`create_run` inside the caller's transaction (a cron fire records its fire in
    the same one)."""
    if not lock_model(conn, model_id):
        raise ModelNotFound(model_id)
    rows = conn.execute(
        select(
            assets.c.id,
            assets.c.name,
            assets.c.kind,
            assets.c.job,
            assets.c.last_job_id,
            assets.c.code_version,
        ).where(assets.c.model_id == model_id)
    ).all()
    # A source is observed, not run: runs neither refresh nor wait for it.
    sources = {r.name for r in rows if r.kind == "source"}
    rows = [r for r in rows if r.name not in sources]
    found = {r.name: plans.Asset(r.id, r.name, r.job) for r in rows}
    edges = [e for e in graph_edges(conn, model_id) if e[0] not in sources]
    named = _named(request, found, edges, sources)
    t = now()
    run_id: int = conn.execute(
        insert(runs)
        .values(
            model_id=model_id,
            batch=request.batch or "",
            batched=request.batch is not None,
            named=named,
            downstream=request.downstream,
            force=request.force,
            fire_time=request.fire_time,
            tick_id=request.tick_id,
            created_at=t,
        )
        .returning(runs.c.id)
    ).scalar_one()
    batch = request.batch or plans.generated_batch(run_id)
    existing: dict[str, int] = {}
    if request.batch is not None:
        existing = batch_jobs(conn, model_id, batch)
        again = [n for n in named if n in existing]
        if again and not request.force:
            raise AlreadyInBatch(batch, again)
        plan = plans.plan_batch(model_id, found, edges, named, batch, existing, again)
    else:
        chosen = plans.refresh_set(found, edges, named, request.downstream)
        last_jobs = {r.name: r.last_job_id for r in rows if r.last_job_id is not None}
        in_flight = _in_flight(conn, chosen, edges, last_jobs)
        plan = plans.plan_refresh(model_id, found, edges, chosen, batch, in_flight)
    root, joins = build(plan.payload)
    root_id, ids = insert_tree_ids(conn, root, joins)
    for wait in plan.external:
        _attach(conn, wait, joins)
    own = {plan.paths[s.path]: ids[id(s)] for s in root.walk() if s.path in plan.paths}
    reasons = request.reasons or {}
    code_versions = {r.name: r.code_version for r in rows}
    conn.execute(
        insert(run_assets),
        [
            {
                "run_id": run_id,
                "model_id": model_id,
                "asset_id": found[name].asset_id,
                "asset": name,
                "batch": batch,
                "job_id": own.get(name, existing.get(name)),
                "own": name in own,
                "position": position,
                "waits_for": [list(pair) for pair in plan.waits_for.get(name, [])],
                "reason": reasons.get(name),
                "code_version": code_versions[name],
                "settled": name not in own,  # only an own refresh's end is recorded
            }
            for position, name in enumerate(plan.assets)
        ],
    )
    record_refreshes(conn, {found[name].asset_id: job_id for name, job_id in own.items()})
    if request.tick_id is None:  # someone runs a held asset: the hold ends
        release_holds(conn, [found[name].asset_id for name in own])
    conn.execute(update(runs).where(runs.c.id == run_id).values(batch=batch, root_job_id=root_id))
    return run_id


def _named(
    request: RunRequest,
    found: dict[str, plans.Asset],
    edges: list[rules.Edge],
    sources: set[str],
) -> list[str]:
    """The assets the request names (default: all; with a batch, the roots), checked."""
    if not found:
        raise plans.RunRefused("the model has no assets", {"assets": ["the model has no assets"]})
    if request.assets is None:
        uphill = rules.depends_on(edges)
        names = sorted(found)
        return [n for n in names if not uphill.get(n)] if request.batch is not None else names
    problems = {
        f"assets[{i}]": [
            f"{name!r} is a source asset: it is observed, not run"
            if name in sources
            else f"no asset named {name!r} in this model"
        ]
        for i, name in enumerate(request.assets)
        if name not in found
    }
    if problems:
        raise plans.RunRefused("unknown assets", problems)
    return list(dict.fromkeys(request.assets))


def _in_flight(
    conn: Connection, chosen: list[str], edges: list[rules.Edge], last_jobs: dict[str, int]
) -> dict[str, tuple[str, int]]:
    """Upstreams outside the run whose refresh has not ended: name -> (batch, job id).
    Their job rows stay locked until this transaction ends (see the module's doc)."""
    inside = set(chosen)
    outside = sorted({up for up, down in edges if down in inside and up not in inside})
    found: dict[str, tuple[str, int]] = {}
    for name in outside:
        job_id = last_jobs.get(name)
        if job_id is None:
            continue
        row = conn.execute(
            select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()
        ).first()
        if row is None or row.status in _TERMINAL:
            continue
        batch = conn.execute(
            select(run_assets.c.batch).where(run_assets.c.job_id == job_id).limit(1)
        ).scalar()
        found[name] = (batch or f"of job {job_id}", job_id)
    return found


def _attach(conn: Connection, wait: plans.ExternalArrival, joins: list[JoinPlan]) -> None:
    key, _ = split_target(wait.node["targetObject"])
    batch = wait.node["parameters"]["batch"]
    join_id = next(p.join_id for p in joins if p.key == key and p.batch == batch)
    assert join_id is not None
    parent = conn.execute(select(jobs).where(jobs.c.id == wait.job_id)).one()
    spec = JobSpec(
        target_object=wait.node["targetObject"],
        job_type="JOIN",
        target_id=key,
        parameters=wait.node["parameters"],
    )
    attach_join_node(conn, parent, spec, join_id)


def batch_jobs(conn: Connection, model_id: int, batch: str) -> dict[str, int]:
    """asset name -> the latest job refreshing it in the batch (created by any run)."""
    rows = conn.execute(
        select(run_assets.c.asset, run_assets.c.job_id)
        .where(
            run_assets.c.model_id == model_id,
            run_assets.c.batch == batch,
            run_assets.c.own.is_(True),
        )
        .order_by(run_assets.c.id)
    )
    return {r.asset: r.job_id for r in rows}


def cancel_run(db: Database, model_id: int, run_id: int) -> list[int]:
    """Cancel every job of the run's chain that has not ended, with the engine's cancel:
    the start first (what waits below it is cancelled with it), then each asset job still
    waiting or running. Returns the ids cancel was applied to. Raises RunNotFound."""
    with db.read() as conn:
        run = conn.execute(
            select(runs.c.root_job_id).where(runs.c.id == run_id, runs.c.model_id == model_id)
        ).first()
        if run is None:
            raise RunNotFound(run_id)
        own = conn.execute(
            select(run_assets.c.job_id)
            .where(run_assets.c.run_id == run_id, run_assets.c.own.is_(True))
            .order_by(run_assets.c.position)
        ).scalars()
        candidates = [run.root_job_id, *own]
    done: list[int] = []
    for job_id in candidates:
        try:
            actions.cancel(db, job_id)
        except (actions.Conflict, actions.NotFound):
            continue  # ended already (or cancelled with what it waited for)
        done.append(job_id)
    return done
