"""The assets' cron: each fire time of a model starts one run of the assets due then.

Like a schedule's fire (``schedules.fire``), one transaction does it all: it takes the
model's lock, moves the due assets' ``next_fire_at`` on only if it still holds the fire time
this process saw, records the fire under the unique (model, fire time) row and stores the
run. Two schedulers racing for a fire time: the second waits for the model's lock, then
finds no asset due at that time any more (and the unique row would refuse it anyway).
The cron arithmetic is the caller's (``NextFire``), as for schedules.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.domain.payload import PayloadError
from app.domain.runs import RunRefused
from app.store.database import Database
from app.store.graphs import lock_model
from app.store.join_setup import JoinConflict
from app.store.runs import AlreadyInBatch, BuildChain, RunRequest, store_run
from app.store.schedules import MAX_MESSAGE, NextFire
from app.store.tables import assets, model_fires


@dataclass(frozen=True)
class ModelFire:
    model_id: int
    fire_time: float
    assets: list[str]
    run_id: int | None
    message: str | None


def schedule_new(db: Database, next_fire: NextFire) -> int:
    """Give assets with a cron and no next fire time (new, or their cron changed) one."""
    query = select(assets.c.id, assets.c.cron, assets.c.timezone).where(
        assets.c.cron.is_not(None), assets.c.next_fire_at.is_(None)
    )
    with db.read() as conn:
        pending = conn.execute(query).all()
    if not pending:
        return 0

    def work(conn: Connection) -> int:
        for row in pending:
            conn.execute(
                update(assets)
                .where(
                    assets.c.id == row.id,
                    assets.c.next_fire_at.is_(None),
                    assets.c.cron == row.cron,
                    assets.c.timezone == row.timezone,
                )
                .values(next_fire_at=next_fire(row.cron, row.timezone))
            )
        return len(pending)

    return db.write(work)


def due(db: Database, at: float) -> list[tuple[int, float]]:
    """(model id, fire time) of every fire time due at ``at``, earliest first."""
    query = (
        select(assets.c.model_id, assets.c.next_fire_at)
        .where(assets.c.next_fire_at <= at)
        .group_by(assets.c.model_id, assets.c.next_fire_at)
        .order_by(assets.c.next_fire_at, assets.c.model_id)
    )
    with db.read() as conn:
        return [(row.model_id, row.next_fire_at) for row in conn.execute(query)]


def earliest_fire(db: Database) -> float | None:
    with db.read() as conn:
        value = conn.execute(select(func.min(assets.c.next_fire_at))).scalar()
    return float(value) if value is not None else None


def fire(
    db: Database,
    model_id: int,
    fire_time: float,
    at: float,
    next_fire: NextFire,
    build: BuildChain,
) -> ModelFire | None:
    """Serve one fire time of a model: one run of its assets due then, without downstream.
    None when another process served it first (or nothing is due at that time any more).
    A run that cannot be built still uses the fire time up, with its reason recorded."""

    def work(conn: Connection) -> ModelFire | None:
        if fire_time > at or not lock_model(conn, model_id):
            return None
        due_now = conn.execute(
            select(assets.c.id, assets.c.name, assets.c.cron, assets.c.timezone)
            .where(assets.c.model_id == model_id, assets.c.next_fire_at == fire_time)
            .order_by(assets.c.name)
        ).all()
        if not due_now:
            return None
        for row in due_now:
            conn.execute(
                update(assets)
                .where(assets.c.id == row.id)
                .values(next_fire_at=next_fire(row.cron, row.timezone))
            )
        try:
            with conn.begin_nested():
                fire_id = conn.execute(
                    insert(model_fires)
                    .values(model_id=model_id, fire_time=fire_time, fired_at=at)
                    .returning(model_fires.c.id)
                ).scalar_one()
        except IntegrityError:
            return None  # served already (a clock set back): the advance stands
        names = [row.name for row in due_now]
        request = RunRequest(assets=names, downstream=False, fire_time=fire_time)
        run_id: int | None = None
        message: str | None = None
        try:
            with conn.begin_nested():
                run_id = store_run(conn, model_id, request, build)
        except (PayloadError, RunRefused, JoinConflict, AlreadyInBatch) as exc:
            message = f"no run: {getattr(exc, 'message', exc)}"[:MAX_MESSAGE]
        conn.execute(
            update(model_fires)
            .where(model_fires.c.id == fire_id)
            .values(run_id=run_id, message=message)
        )
        return ModelFire(model_id, fire_time, names, run_id, message)

    return db.write(work)
