"""Recording what ended refreshes produced ("settling"): a version for a finished one, a
failure (and, after too many in a row, a hold) for a failed automated one.

Whoever gets there first records a refresh: a tick, or a read of the model's assets; the
caller holds the model's lock and one guarded UPDATE of the ``run_assets`` rows decides.

**What a refresh read.** For an upstream it waited for (in its run, or refreshing in
another run its run waited for: ``run_assets.waits_for``), the version that upstream's job
produced: exact, whatever the clocks say. For any other upstream, the latest version that
had arrived when the refresh started. (Comparing times alone is wrong when a downstream is
claimed in the transaction that records its upstream's end: its start may be stamped before
the upstream's end.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update

from app.domain import freshness as rules
from app.domain.statuses import TERMINAL, Status
from app.store.asset_versions import add_event
from app.store.automation_tables import asset_versions
from app.store.graphs import graph_edges
from app.store.tables import assets, jobs, run_assets, runs

_TERMINAL = [s.value for s in TERMINAL]
_V = asset_versions.c


def unsettled(conn: Connection, model_id: int) -> bool:
    """Whether a refresh of the model has ended and is not recorded yet."""
    return conn.execute(_unsettled_query(model_id).limit(1)).first() is not None


def _unsettled_query(model_id: int) -> Any:
    ra = run_assets.c
    return (
        select(
            ra.id,
            ra.asset_id,
            ra.job_id,
            ra.run_id,
            ra.code_version,
            ra.waits_for,
            runs.c.tick_id,
            runs.c.created_at.label("run_created_at"),
            jobs.c.status,
            jobs.c.result,
            jobs.c.message,
            jobs.c.started_at,
            jobs.c.finished_at,
        )
        .join(jobs, jobs.c.id == ra.job_id)
        .join(runs, runs.c.id == ra.run_id)
        .where(
            ra.model_id == model_id,
            ra.settled.is_(False),
            ra.own.is_(True),
            jobs.c.status.in_(_TERMINAL),
        )
        .order_by(ra.id)  # a run's assets in topological order: upstreams first
    )


def settle(conn: Connection, model_id: int, now: float, max_failures: int) -> set[int]:
    """Record every ended refresh of the model (the caller holds the model's lock);
    returns the ids of the assets whose data or failure count changed."""
    ended = conn.execute(_unsettled_query(model_id)).all()
    if not ended:
        return set()
    won = set(
        conn.execute(
            update(run_assets)
            .where(run_assets.c.id.in_([r.id for r in ended]), run_assets.c.settled.is_(False))
            .values(settled=True)
            .returning(run_assets.c.id)
        ).scalars()
    )
    ended = [r for r in ended if r.id in won]
    names = {
        r.id: r.name
        for r in conn.execute(
            select(assets.c.id, assets.c.name).where(assets.c.model_id == model_id)
        )
    }
    ups: dict[int, list[tuple[str, int]]] = {}
    ids = {name: asset_id for asset_id, name in names.items()}
    for up, down in graph_edges(conn, model_id):
        ups.setdefault(ids[down], []).append((up, ids[up]))
    reads = _Reads.preload(conn, model_id, ended)
    changed: set[int] = set()
    for row in ended:
        if row.asset_id not in names:
            continue  # the asset was deleted since
        if row.status == Status.FINISHED.value:
            changed.add(row.asset_id)
            _record_refresh(
                conn, model_id, row, reads.inputs(row, ups.get(row.asset_id, [])), reads, now
            )
        elif row.status == Status.FAILED.value and row.tick_id is not None:
            changed.add(row.asset_id)
            _count_failure(conn, model_id, row, now, max_failures)
    return changed


@dataclass
class _Reads:
    """Which upstream versions the refreshes being recorded read."""

    conn: Connection
    # (upstream, batch) -> the job that refreshed it there, for the batches waited for
    jobs_by_batch: dict[tuple[str, str], int]
    # job id -> (version id, data version) of what it produced
    by_job: dict[int, tuple[int, str]] = field(default_factory=dict)
    # asset id -> its current version (id, data version, arrival), read once
    current: dict[int, tuple[int, str, float]] = field(default_factory=dict)

    @classmethod
    def preload(cls, conn: Connection, model_id: int, rows: Sequence[Any]) -> _Reads:
        batches = {batch for row in rows for _up, batch in row.waits_for or ()}
        found: dict[tuple[str, str], int] = {}
        if batches:
            ra = run_assets.c
            for r in conn.execute(
                select(ra.asset, ra.batch, ra.job_id)
                .where(ra.model_id == model_id, ra.own.is_(True), ra.batch.in_(sorted(batches)))
                .order_by(ra.id)
            ):
                found[(r.asset, r.batch)] = r.job_id  # the latest refresh in the batch
        reads = cls(conn, found)
        a = assets.c
        for cur in conn.execute(
            select(a.id, _V.id.label("version_id"), _V.data_version, _V.arrived_at)
            .join(asset_versions, _V.id == a.current_version_id)
            .where(a.model_id == model_id)
        ):
            reads.current[cur.id] = (cur.version_id, cur.data_version, cur.arrived_at)
        if found:
            query = select(_V.job_id, _V.id, _V.data_version).where(
                _V.job_id.in_(sorted(set(found.values())))
            )
            reads.by_job = {r.job_id: (r.id, r.data_version) for r in conn.execute(query)}
        return reads

    def inputs(self, row: Any, ups: Sequence[tuple[str, int]]) -> dict[str, tuple[int, str]]:
        waited = {up: batch for up, batch in row.waits_for or ()}
        started = _started(row)
        found: dict[str, tuple[int, str]] = {}
        for name, up_id in ups:
            job = self.jobs_by_batch.get((name, waited[name])) if name in waited else None
            read = self.by_job.get(job) if job is not None else None
            current = self.current.get(up_id)
            if read is None and current is not None and current[2] <= started:
                read = current[:2]  # the usual case: nothing newer arrived since
            if read is None:
                latest = self.conn.execute(
                    select(_V.id, _V.data_version)
                    .where(_V.asset_id == up_id, _V.arrived_at <= started)
                    .order_by(_V.id.desc())
                    .limit(1)
                ).first()
                read = (latest.id, latest.data_version) if latest is not None else None
            if read is not None:
                found[name] = read
        return found


def _started(row: Any) -> float:
    return float(row.started_at if row.started_at is not None else row.finished_at)


def _record_refresh(
    conn: Connection,
    model_id: int,
    row: Any,
    inputs: Mapping[str, tuple[int, str]],
    reads: _Reads,
    now: float,
) -> None:
    version = rules.data_version(row.result, row.code_version, inputs, row.job_id)
    finished = row.finished_at if row.finished_at is not None else now
    version_id = conn.execute(
        insert(asset_versions)
        .values(
            model_id=model_id,
            asset_id=row.asset_id,
            job_id=row.job_id,
            run_id=row.run_id,
            data_version=version,
            code_version=row.code_version,
            inputs={k: list(v) for k, v in inputs.items()},
            started_at=_started(row),
            arrived_at=finished,
            run_seconds=max(0.0, finished - row.run_created_at),
        )
        .returning(_V.id)
    ).scalar_one()
    reads.by_job[row.job_id] = (version_id, version)  # what its downstream in the run read
    reads.current[row.asset_id] = (version_id, version, finished)
    conn.execute(
        update(assets)
        .where(assets.c.id == row.asset_id)
        .values(current_version_id=version_id, failures=0)
    )


def _count_failure(conn: Connection, model_id: int, row: Any, now: float, limit: int) -> None:
    """An automated refresh failed: after ``limit`` in a row the asset is held."""
    failures = conn.execute(
        update(assets)
        .where(assets.c.id == row.asset_id)
        .values(failures=assets.c.failures + 1, next_evaluation_at=now)  # look again
        .returning(assets.c.failures, assets.c.held_at)
    ).one()
    if failures.failures >= limit and failures.held_at is None:
        error = (row.message or "failed")[:2000]
        conn.execute(
            update(assets).where(assets.c.id == row.asset_id).values(held_at=now, held_error=error)
        )
        message = f"held after {failures.failures} failed automated runs in a row: {error}"
        add_event(conn, model_id, row.asset_id, "HELD", now, message)
