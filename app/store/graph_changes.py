"""Dependency graphs, changing: assets and dependencies, one model at a time.

Every change takes the model's lock first (``graphs.lock_model``) and then checks the graph
as it is, so two changes of one model never both pass their checks against a graph the
other is changing: a cycle cannot slip in between a check and its insert, however many
clients add dependencies at once. The cycle rule itself is ``app.domain.graphs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.domain import graphs as rules
from app.store.database import Database, now
from app.store.graphs import (
    ModelNotFound,
    NameTaken,
    Refreshing,
    dependency_rows,
    graph_edges,
    lock_model,
    refreshing,
)
from app.store.tables import asset_dependencies, assets

ASSET_EDITABLE = frozenset(
    {
        "name",
        "description",
        "job",
        "cron",
        "timezone",
        "automation",
        "freshness",
        "code_version",
        "observe",
    }
)
ASSET_DEFAULTS = {
    "description": None,
    "cron": None,
    "timezone": "UTC",
    "kind": "job",
    "job": None,
    "automation": "off",
    "freshness": None,
    "code_version": None,
    "observe": None,
}


class UnknownAsset(Exception):
    """No asset with this id in any model (HTTP 404)."""

    def __init__(self, asset_id: int):
        super().__init__(f"no asset {asset_id}")
        self.asset_id = asset_id


class CrossModel(Exception):
    """A dependency between assets of different models (HTTP 400)."""

    def __init__(self, names: list[str]):
        super().__init__(f"not assets of this model: {', '.join(names)}")
        self.names = names


class DuplicateDependency(Exception):
    """This dependency exists already (HTTP 409); ``dependency_id`` is the stored one."""

    def __init__(self, dependency_id: int):
        super().__init__(f"dependency {dependency_id} exists already")
        self.dependency_id = dependency_id


class DependencyCycle(Exception):
    """The dependency would close a cycle (HTTP 400); ``cycle`` as the domain names it."""

    def __init__(self, cycle: list[str]):
        super().__init__(rules.describe_cycle(cycle))
        self.cycle = cycle


# -- assets ----------------------------------------------------------------------------


def create_asset(db: Database, model_id: int, values: Mapping[str, Any]) -> int:
    """Store a validated asset; returns its id. Raises ModelNotFound, NameTaken."""

    def work(conn: Connection) -> int:
        if not lock_model(conn, model_id):
            raise ModelNotFound(model_id)
        t = now()
        row = {**ASSET_DEFAULTS, **values, "model_id": model_id, "created_at": t, "updated_at": t}
        asset_id: int = conn.execute(insert(assets).values(row).returning(assets.c.id)).scalar_one()
        return asset_id

    try:
        return db.write(work)
    except IntegrityError:  # (model_id, name) is the only unique pair besides the id
        raise NameTaken(str(values.get("name"))) from None


def update_asset(db: Database, model_id: int, asset_id: int, changes: Mapping[str, Any]) -> bool:
    """Apply validated changes; False if the model has no such asset. Raises NameTaken."""
    unknown = set(changes) - ASSET_EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")

    def work(conn: Connection) -> bool:
        if not lock_model(conn, model_id):
            return False
        values = {**changes, "updated_at": now()}
        if "cron" in changes or "timezone" in changes:
            values["next_fire_at"] = None  # the scheduler computes it anew
        if "observe" in changes:
            values["next_evaluation_at"] = None  # observe at the next tick
        changed = conn.execute(
            update(assets)
            .where(assets.c.id == asset_id, assets.c.model_id == model_id)
            .values(values)
        ).rowcount
        return bool(changed)

    try:
        return db.write(work)
    except IntegrityError:
        raise NameTaken(str(changes.get("name"))) from None


def delete_asset(db: Database, model_id: int, asset_id: int) -> bool:
    """Delete an asset and its dependencies; False if the model has no such asset. Raises
    Refreshing while its latest refresh has not ended."""

    def work(conn: Connection) -> bool:
        if not lock_model(conn, model_id):
            return False
        mine = (assets.c.id == asset_id, assets.c.model_id == model_id)
        if conn.execute(select(assets.c.id).where(*mine)).first() is None:
            return False
        busy = refreshing(conn, [asset_id])
        if busy:
            raise Refreshing(busy)
        _delete_assets(conn, [asset_id])
        return True

    return db.write(work)


def _delete_assets(conn: Connection, asset_ids: Sequence[int]) -> None:
    """Delete assets with every dependency they are an end of."""
    if not asset_ids:
        return
    ends = asset_dependencies.c.upstream_id.in_(asset_ids) | asset_dependencies.c.downstream_id.in_(
        asset_ids
    )
    conn.execute(delete(asset_dependencies).where(ends))
    conn.execute(delete(assets).where(assets.c.id.in_(asset_ids)))


def record_refreshes(conn: Connection, job_ids: Mapping[int, int]) -> None:
    """Runs: asset id -> the root job of its refresh, in the transaction storing the run.
    The asset counts as refreshing until that job is terminal."""
    if not job_ids:
        return
    conn.execute(
        update(assets)
        .where(assets.c.id == bindparam("asset_id"))
        .values(last_job_id=bindparam("job_id")),
        [{"asset_id": asset_id, "job_id": job_id} for asset_id, job_id in job_ids.items()],
    )


# -- dependencies ------------------------------------------------------------------------


def add_dependency(db: Database, model_id: int, upstream_id: int, downstream_id: int) -> int:
    """Store "downstream depends on upstream"; returns its id.

    Raises ModelNotFound, UnknownAsset, CrossModel, DuplicateDependency or DependencyCycle,
    checked in that order under the model's lock; nothing is stored unless all pass.
    """

    def work(conn: Connection) -> int:
        if not lock_model(conn, model_id):
            raise ModelNotFound(model_id)
        ends = {upstream_id, downstream_id}
        rows = conn.execute(
            select(assets.c.id, assets.c.model_id, assets.c.name).where(assets.c.id.in_(ends))
        ).all()
        found = {row.id: row for row in rows}
        for asset_id in (upstream_id, downstream_id):
            if asset_id not in found:
                raise UnknownAsset(asset_id)
        foreign = sorted({row.name for row in rows if row.model_id != model_id})
        if foreign:
            raise CrossModel(foreign)
        existing = conn.execute(
            select(asset_dependencies.c.id).where(
                asset_dependencies.c.upstream_id == upstream_id,
                asset_dependencies.c.downstream_id == downstream_id,
            )
        ).scalar()
        if existing is not None:
            raise DuplicateDependency(existing)
        if _closes_a_cycle(conn, upstream_id, downstream_id):
            # Rare: read the whole graph once, to name the cycle in "depends on" order.
            up, down = found[upstream_id].name, found[downstream_id].name
            cycle = rules.find_cycle(graph_edges(conn, model_id), up, down)
            if cycle is not None:
                raise DependencyCycle(cycle)
        return _insert_dependency(conn, model_id, upstream_id, downstream_id)

    return db.write(work)


def _closes_a_cycle(conn: Connection, upstream_id: int, downstream_id: int) -> bool:
    """Whether the downstream is the upstream or one of its ancestors: one indexed recursive
    query up from the upstream, instead of reading the model's whole graph per add."""
    if upstream_id == downstream_id:
        return True
    deps = asset_dependencies.c
    above = select(deps.upstream_id.label("id")).where(deps.downstream_id == upstream_id)
    ancestors = above.cte("ancestors", recursive=True)
    ancestors = ancestors.union(
        select(deps.upstream_id).join(ancestors, deps.downstream_id == ancestors.c.id)
    )
    found = select(ancestors.c.id).where(ancestors.c.id == downstream_id).limit(1)
    return conn.execute(found).first() is not None


def _insert_dependency(
    conn: Connection, model_id: int, upstream_id: int, downstream_id: int
) -> int:
    row = {
        "model_id": model_id,
        "upstream_id": upstream_id,
        "downstream_id": downstream_id,
        "created_at": now(),
    }
    dependency_id: int = conn.execute(
        insert(asset_dependencies).values(row).returning(asset_dependencies.c.id)
    ).scalar_one()
    return dependency_id


def get_dependency(db: Database, model_id: int, dependency_id: int) -> dict[str, Any] | None:
    """One dependency of the model with both ends' names, or None."""
    with db.read() as conn:
        found = dependency_rows(conn, model_id, dependency_id)
    return found[0] if found else None


def delete_dependency(db: Database, model_id: int, dependency_id: int) -> bool:
    """Delete one dependency of the model; False if it has no such dependency."""

    def work(conn: Connection) -> bool:
        if not lock_model(conn, model_id):
            return False
        deleted = conn.execute(
            delete(asset_dependencies).where(
                asset_dependencies.c.id == dependency_id,
                asset_dependencies.c.model_id == model_id,
            )
        ).rowcount
        return bool(deleted)

    return db.write(work)


# -- the whole graph ---------------------------------------------------------------------


def replace_graph(
    db: Database,
    model_id: int,
    new_assets: Sequence[Mapping[str, Any]],
    edges: Sequence[rules.Edge],
) -> None:
    """Make the model's graph exactly ``new_assets`` (validated rows, keyed by name) and
    ``edges`` (upstream name, downstream name; checked acyclic), in one transaction.

    Assets and dependencies that stay keep their ids (and an asset its refresh); those
    left out are deleted. Raises ModelNotFound, or Refreshing for assets left out while
    their refresh has not ended.
    """

    def work(conn: Connection) -> None:
        if not lock_model(conn, model_id):
            raise ModelNotFound(model_id)
        stored = conn.execute(
            select(assets.c.id, assets.c.name, assets.c.cron, assets.c.timezone).where(
                assets.c.model_id == model_id
            )
        ).all()
        current = {row.name: row.id for row in stored}
        timing = {row.name: (row.cron, row.timezone) for row in stored}
        wanted = {a["name"] for a in new_assets}
        gone = [asset_id for name, asset_id in current.items() if name not in wanted]
        busy = refreshing(conn, gone) if gone else []
        if busy:
            raise Refreshing(busy)
        _delete_assets(conn, gone)
        t = now()
        ids: dict[str, int] = {}
        for asset in new_assets:
            asset_id = current.get(asset["name"])
            if asset_id is None:
                row = {**ASSET_DEFAULTS, **asset, "model_id": model_id}
                row.update(created_at=t, updated_at=t)
                asset_id = conn.execute(
                    insert(assets).values(row).returning(assets.c.id)
                ).scalar_one()
            else:
                values = {**ASSET_DEFAULTS, **asset, "updated_at": t}
                if (values["cron"], values["timezone"]) != timing[asset["name"]]:
                    values["next_fire_at"] = None  # the scheduler computes it anew
                conn.execute(update(assets).where(assets.c.id == asset_id).values(values))
            ids[asset["name"]] = asset_id
        _replace_edges(conn, model_id, [(ids[up], ids[down]) for up, down in edges])

    db.write(work)


def _replace_edges(conn: Connection, model_id: int, wanted: list[tuple[int, int]]) -> None:
    """Keep the stored dependencies that are wanted, delete the others, add the new ones
    in their given order."""
    stored = {
        (row.upstream_id, row.downstream_id): row.id
        for row in conn.execute(
            select(
                asset_dependencies.c.id,
                asset_dependencies.c.upstream_id,
                asset_dependencies.c.downstream_id,
            ).where(asset_dependencies.c.model_id == model_id)
        )
    }
    keep = set(wanted)
    stale = [dep_id for pair, dep_id in stored.items() if pair not in keep]
    if stale:
        conn.execute(delete(asset_dependencies).where(asset_dependencies.c.id.in_(stale)))
    for upstream_id, downstream_id in dict.fromkeys(wanted):
        if (upstream_id, downstream_id) not in stored:
            _insert_dependency(conn, model_id, upstream_id, downstream_id)
