"""Assets' versions: reading a model's assets as the freshness rules see them
(``app/domain/freshness.py``), a source's observations, holds and asset events.

What a refresh produced is recorded by ``settling``. Every writer of versions holds the
model's lock, so a tick's watermark (the newest version id it saw) is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from app.domain import freshness as rules
from app.domain.reconcile import Standing
from app.domain.statuses import TERMINAL
from app.store.automation_tables import asset_events, asset_versions
from app.store.graphs import graph_edges, lock_model
from app.store.tables import assets, jobs

_TERMINAL = [s.value for s in TERMINAL]


@dataclass
class ModelState:
    """A model's assets as the rules see them, with their ids and standing."""

    assets: dict[str, rules.Asset]
    ids: dict[str, int]
    rows: dict[str, Any]
    standing: dict[str, Standing]
    history: StoredHistory

    def assessment(self) -> rules.Assessment:
        return rules.Assessment(self.assets, self.history)


@dataclass
class StoredHistory:
    """Older versions, read when the rules ask for them (few: the inputs of current ones)."""

    conn: Connection
    ids: Mapping[str, int]
    _versions: dict[int, rules.Version] = field(default_factory=dict)

    def version(self, version_id: int) -> rules.Version:
        if version_id not in self._versions:
            row = self.conn.execute(
                select(asset_versions).where(asset_versions.c.id == version_id)
            ).one()
            self._versions[version_id] = to_version(row)
        return self._versions[version_id]

    def first_arrival_after(self, asset: str, version_id: int) -> float | None:
        held = self.version(version_id).data_version
        found = self.conn.execute(
            select(func.min(asset_versions.c.arrived_at)).where(
                asset_versions.c.asset_id == self.ids[asset],
                asset_versions.c.id > version_id,
                asset_versions.c.data_version != held,
            )
        ).scalar()
        return float(found) if found is not None else None


def to_version(row: Any) -> rules.Version:
    inputs = {name: (int(pair[0]), str(pair[1])) for name, pair in (row.inputs or {}).items()}
    return rules.Version(
        row.id, row.data_version, row.code_version, inputs, row.started_at, row.arrived_at
    )


def load_state(conn: Connection, model_id: int) -> ModelState:
    """Every asset of the model with its current version, upstreams and standing."""
    rows = {r.name: r for r in conn.execute(select(assets).where(assets.c.model_id == model_id))}
    ids = {name: r.id for name, r in rows.items()}
    ups: dict[str, list[str]] = {name: [] for name in rows}
    for up, down in graph_edges(conn, model_id):
        ups[down].append(up)
    current_ids = [r.current_version_id for r in rows.values() if r.current_version_id]
    history = StoredHistory(conn, ids)
    run_seconds: dict[int, float] = {}
    for row in _chunks(conn, asset_versions, current_ids):
        history._versions[row.id] = to_version(row)
        run_seconds[row.id] = row.run_seconds or 0.0
    last_jobs = [r.last_job_id for r in rows.values() if r.last_job_id]
    busy = {job_id for job_id, status in _job_statuses(conn, last_jobs) if status not in _TERMINAL}
    found: dict[str, rules.Asset] = {}
    standing: dict[str, Standing] = {}
    for name, r in rows.items():
        current = history._versions.get(r.current_version_id) if r.current_version_id else None
        found[name] = rules.Asset(
            name,
            r.kind,
            r.automation,
            r.code_version,
            rules.Policy.from_json(r.freshness),
            tuple(sorted(ups[name])),
            current,
        )
        standing[name] = Standing(
            held=r.held_at is not None,
            in_flight=r.last_job_id in busy,
            run_seconds=run_seconds.get(r.current_version_id or 0, 0.0),
        )
    return ModelState(found, ids, rows, standing, history)


def _chunks(conn: Connection, table: Any, ids: list[int], size: int = 500) -> Iterable[Any]:
    for i in range(0, len(ids), size):
        yield from conn.execute(select(table).where(table.c.id.in_(ids[i : i + size])))


def _job_statuses(conn: Connection, ids: list[int], size: int = 500) -> Iterable[Any]:
    for i in range(0, len(ids), size):
        query = select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids[i : i + size]))
        yield from conn.execute(query)


def release_holds(conn: Connection, asset_ids: list[int], by: str = "a run") -> list[int]:
    """End the holds of those of ``asset_ids`` that are held (someone runs them, or
    releases them); returns the ids released."""
    if not asset_ids:
        return []
    held = conn.execute(
        update(assets)
        .where(assets.c.id.in_(asset_ids), assets.c.held_at.is_not(None))
        .values(held_at=None, held_error=None, failures=0)
        .returning(assets.c.id, assets.c.model_id)
    ).all()
    for row in held:
        add_event(conn, row.model_id, row.id, "RELEASED", time.time(), f"hold ended by {by}")
    return [row.id for row in held]


def add_event(
    conn: Connection, model_id: int, asset_id: int, kind: str, at: float, message: str
) -> None:
    conn.execute(
        insert(asset_events).values(
            model_id=model_id, asset_id=asset_id, kind=kind, at=at, message=message
        )
    )


# -- observations ------------------------------------------------------------------------


def observe(
    conn: Connection, model_id: int, asset_id: int, version: str, observed_at: float
) -> bool:
    """Record a source's observed data version; True if it is new data (the same version
    again changes nothing). The caller checked that the asset is a source of the model."""
    lock_model(conn, model_id)
    current = conn.execute(
        select(asset_versions.c.data_version)
        .join(assets, assets.c.current_version_id == asset_versions.c.id)
        .where(assets.c.id == asset_id)
    ).scalar()
    if current == version:
        return False
    version_id = conn.execute(
        insert(asset_versions)
        .values(
            model_id=model_id,
            asset_id=asset_id,
            data_version=version,
            inputs={},
            started_at=observed_at,
            arrived_at=observed_at,
        )
        .returning(asset_versions.c.id)
    ).scalar_one()
    conn.execute(
        update(assets).where(assets.c.id == asset_id).values(current_version_id=version_id)
    )
    return True
