"""Dependency graphs, reading: models, their assets with "depends on" and "required by",
their dependencies, a whole graph as a file; and creating, renaming and deleting models.

Changes to a model's graph (assets and dependencies) are in ``graph_changes``: they hold the
model's lock. Rows come back as plain dicts of column names, plus what the views add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.domain import graphs as rules
from app.domain.statuses import TERMINAL
from app.store.database import Database, now
from app.store.run_reads import active_runs
from app.store.tables import (
    asset_dependencies,
    assets,
    jobs,
    model_fires,
    models,
    run_assets,
    runs,
)

MODEL_EDITABLE = frozenset({"name", "description"})


class NameTaken(Exception):
    """Another model (or another asset of the model) already has this name (HTTP 409)."""


class ModelNotFound(Exception):
    """No model with this id (HTTP 404)."""


class Refreshing(Exception):
    """Assets whose latest refresh has not ended yet (HTTP 409); ``names`` says which."""

    def __init__(self, names: list[str]):
        super().__init__(f"still refreshing: {', '.join(names)}")
        self.names = names


# -- models ----------------------------------------------------------------------------


def create_model(db: Database, name: str, description: str | None) -> int:
    """Store a model; returns its id. Raises NameTaken."""
    t = now()
    values = {"name": name, "description": description, "created_at": t, "updated_at": t}
    try:
        model_id: int = db.write(
            lambda conn: conn.execute(
                insert(models).values(values).returning(models.c.id)
            ).scalar_one()
        )
    except IntegrityError:  # the only unique column besides the id is the name
        raise NameTaken(name) from None
    return model_id


def update_model(db: Database, model_id: int, changes: Mapping[str, Any]) -> bool:
    """Rename or describe a model; False if there is no such model. Raises NameTaken."""
    unknown = set(changes) - MODEL_EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    values = {**changes, "updated_at": now()}
    try:
        return bool(
            db.write(
                lambda conn: (
                    conn.execute(
                        update(models).where(models.c.id == model_id).values(values)
                    ).rowcount
                )
            )
        )
    except IntegrityError:
        raise NameTaken(str(changes.get("name"))) from None


def delete_model(db: Database, model_id: int) -> bool:
    """Delete a model with its assets, dependencies and run records (the jobs of its runs
    stay); False if unknown. Raises Refreshing while a run of the model is active: one of
    its asset jobs has not ended (``names`` are those runs' ids)."""

    def work(conn: Connection) -> bool:
        if not lock_model(conn, model_id):
            return False
        active = active_runs(conn, model_id)
        if active:
            raise Refreshing([f"run {run_id}" for run_id in active])
        conn.execute(delete(run_assets).where(run_assets.c.model_id == model_id))
        conn.execute(delete(runs).where(runs.c.model_id == model_id))
        conn.execute(delete(model_fires).where(model_fires.c.model_id == model_id))
        conn.execute(delete(asset_dependencies).where(asset_dependencies.c.model_id == model_id))
        conn.execute(delete(assets).where(assets.c.model_id == model_id))
        conn.execute(delete(models).where(models.c.id == model_id))
        return True

    return db.write(work)


def lock_model(conn: Connection, model_id: int) -> bool:
    """Take the model's lock for the rest of the transaction; False if there is no model.

    Every change to a model's graph takes it first, so the changes of one model happen one
    after the other and each checks the graph the previous one left. On PostgreSQL this is
    the row lock of FOR UPDATE; on SQLite a write transaction (BEGIN IMMEDIATE) already
    holds the database's only write lock, and FOR UPDATE is not needed (nor rendered).
    """
    query = select(models.c.id).where(models.c.id == model_id).with_for_update()
    return conn.execute(query).first() is not None


def refreshing(conn: Connection, asset_ids: Any) -> list[str]:
    """Names of those of ``asset_ids`` (a list or a subquery) whose latest refresh job has
    not ended (a job purged by retention ended long ago)."""
    query = (
        select(assets.c.name)
        .join(jobs, jobs.c.id == assets.c.last_job_id)
        .where(assets.c.id.in_(asset_ids), jobs.c.status.not_in([s.value for s in TERMINAL]))
        .order_by(assets.c.name)
    )
    return list(conn.execute(query).scalars())


def _asset_counts() -> Any:
    return (
        select(func.count(assets.c.id))
        .where(assets.c.model_id == models.c.id)
        .scalar_subquery()
        .label("asset_count")
    )


def get_model(db: Database, model_id: int) -> dict[str, Any] | None:
    """A model with its ``asset_count``."""
    with db.read() as conn:
        row = conn.execute(select(models, _asset_counts()).where(models.c.id == model_id))
        found = row.mappings().first()
    return dict(found) if found is not None else None


def list_models(db: Database) -> list[dict[str, Any]]:
    """Every model by name, each with its ``asset_count``."""
    with db.read() as conn:
        rows = conn.execute(select(models, _asset_counts()).order_by(models.c.name)).mappings()
        return [dict(r) for r in rows]


# -- assets and dependencies -------------------------------------------------------------


def list_assets(
    db: Database, model_id: int, transitive: bool = False, asset_id: int | None = None
) -> list[dict[str, Any]] | None:
    """The model's assets by name (only ``asset_id`` if given), each with ``depends_on``
    and ``required_by`` as ``{id, name}`` lists (all ancestors and descendants if
    ``transitive``) and ``last_refresh`` (None until a run refreshed it). None if there is
    no such model."""
    with db.read() as conn:
        if conn.execute(select(models.c.id).where(models.c.id == model_id)).first() is None:
            return None
        query = (
            select(
                assets,
                jobs.c.status.label("refresh_status"),
                jobs.c.started_at.label("refresh_started_at"),
                jobs.c.finished_at.label("refresh_finished_at"),
            )
            .select_from(assets.outerjoin(jobs, jobs.c.id == assets.c.last_job_id))
            .where(assets.c.model_id == model_id)
            .order_by(assets.c.name)
        )
        rows = [dict(r) for r in conn.execute(query).mappings()]
        edges = _edges(conn, model_id)
    ids = {row["name"]: row["id"] for row in rows}
    named = [(up, down) for _, up, down in edges]
    direct_up, direct_down = rules.depends_on(named), rules.required_by(named)
    found = []
    for row in rows:
        if asset_id is not None and row["id"] != asset_id:
            continue
        name = row["name"]
        if transitive:
            up, down = rules.ancestors(named, name), rules.descendants(named, name)
        else:
            up, down = direct_up.get(name, set()), direct_down.get(name, set())
        row["depends_on"] = [{"id": ids[n], "name": n} for n in sorted(up)]
        row["required_by"] = [{"id": ids[n], "name": n} for n in sorted(down)]
        row["last_refresh"] = _last_refresh(row)
        found.append(row)
    return found


def _last_refresh(row: dict[str, Any]) -> dict[str, Any] | None:
    refresh = {
        "job_id": row["last_job_id"],
        "status": row.pop("refresh_status"),
        "started_at": row.pop("refresh_started_at"),
        "finished_at": row.pop("refresh_finished_at"),
    }
    return refresh if refresh["job_id"] is not None else None


def get_asset(
    db: Database, model_id: int, asset_id: int, transitive: bool = False
) -> dict[str, Any] | None:
    """One asset of the model as :func:`list_assets` shows it, or None."""
    found = list_assets(db, model_id, transitive, asset_id)
    return found[0] if found else None


def list_dependencies(db: Database, model_id: int) -> list[dict[str, Any]] | None:
    """The model's dependencies by id, with the names of both ends; None if no model."""
    with db.read() as conn:
        if conn.execute(select(models.c.id).where(models.c.id == model_id)).first() is None:
            return None
        return dependency_rows(conn, model_id)


def dependency_rows(
    conn: Connection, model_id: int, dependency_id: int | None = None
) -> list[dict[str, Any]]:
    """Dependencies as ``{id, model_id, upstream_id, downstream_id, upstream, downstream}``."""
    up, down = assets.alias("up"), assets.alias("down")
    query = (
        select(
            asset_dependencies.c.id,
            asset_dependencies.c.model_id,
            asset_dependencies.c.upstream_id,
            asset_dependencies.c.downstream_id,
            up.c.name.label("upstream"),
            down.c.name.label("downstream"),
        )
        .join(up, up.c.id == asset_dependencies.c.upstream_id)
        .join(down, down.c.id == asset_dependencies.c.downstream_id)
        .where(asset_dependencies.c.model_id == model_id)
        .order_by(asset_dependencies.c.id)
    )
    if dependency_id is not None:
        query = query.where(asset_dependencies.c.id == dependency_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def _edges(conn: Connection, model_id: int) -> list[tuple[int, str, str]]:
    """(dependency id, upstream name, downstream name) of every dependency of the model."""
    return [(r["id"], r["upstream"], r["downstream"]) for r in dependency_rows(conn, model_id)]


def graph_edges(conn: Connection, model_id: int) -> list[rules.Edge]:
    """The model's dependencies as (upstream name, downstream name), for the graph rules."""
    return [(up, down) for _, up, down in _edges(conn, model_id)]


def get_graph(db: Database, model_id: int) -> dict[str, Any] | None:
    """The model's graph as a file: ``{assets: [...], dependencies: [{upstream,
    downstream}]}`` (assets by name, dependencies by id); None if no model."""
    with db.read() as conn:
        if conn.execute(select(models.c.id).where(models.c.id == model_id)).first() is None:
            return None
        a = assets.c
        query = select(
            a.name,
            a.description,
            a.kind,
            a.job,
            a.cron,
            a.timezone,
            a.automation,
            a.freshness,
            a.code_version,
            a.observe,
        ).where(a.model_id == model_id)
        rows = conn.execute(query.order_by(assets.c.name)).mappings()
        found = [dict(r) for r in rows]
        edges = _edges(conn, model_id)
    return {
        "assets": found,
        "dependencies": [{"upstream": up, "downstream": down} for _, up, down in edges],
    }


def names_and_edges(db: Database, model_id: int) -> tuple[list[str], list[rules.Edge]] | None:
    """The model's asset names and (upstream, downstream) edges; None if no model."""
    with db.read() as conn:
        if conn.execute(select(models.c.id).where(models.c.id == model_id)).first() is None:
            return None
        names = conn.execute(select(assets.c.name).where(assets.c.model_id == model_id))
        return list(names.scalars()), graph_edges(conn, model_id)
