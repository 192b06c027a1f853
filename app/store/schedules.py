"""Cron schedules and their fires: storage, and the guarded fire that submits one chain.

A fire is one transaction: move ``next_fire_at`` on only if it still holds the fire time
this process saw (of two racing schedulers exactly one passes), record the fire under the
unique (schedule, fire time) row, and store the chain. All of it commits or none does, so
a fire time never starts two chains, however many processes run the scheduler.

The cron arithmetic is not done here: callers pass ``next_fire``, which gives the first
fire time after their own clock for a (cron, time zone) pair.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError

from app.domain.join_plan import JoinPlan
from app.domain.payload import JobSpec, PayloadError
from app.store.database import Database, now
from app.store.join_setup import JoinConflict
from app.store.submission import insert_tree
from app.store.tables import jobs, schedule_fires, schedules

# How many recent fires a schedule is shown with.
RECENT_FIRES = 5
MAX_MESSAGE = 2000

# (cron, timezone) -> the first fire time strictly after the caller's now, or None.
NextFire = Callable[[str, str], float | None]
# A stored payload -> the validated tree and its joins (raises PayloadError).
BuildTree = Callable[[Any], tuple[JobSpec, list[JoinPlan]]]
# Fields a caller may change; the rest is derived.
EDITABLE = frozenset({"name", "cron", "timezone", "payload", "enabled"})


class NameTaken(Exception):
    """Another schedule already has this name (HTTP 409)."""


@dataclass(frozen=True)
class Fire:
    """One fire time served: the chain it started, or why it started none."""

    schedule_id: int
    fire_time: float
    root_job_id: int | None
    message: str | None


# -- change listeners: a schedule loop in this process wakes when a schedule changes ----

_listeners: weakref.WeakKeyDictionary[Database, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
_listeners_lock = threading.Lock()


def on_change(db: Database, listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after any committed create or update through ``db``; returns a
    function that unsubscribes it."""
    with _listeners_lock:
        _listeners.setdefault(db, []).append(listener)

    def unsubscribe() -> None:
        with _listeners_lock:
            registered = _listeners.get(db, [])
            if listener in registered:
                registered.remove(listener)

    return unsubscribe


def _changed(db: Database) -> None:
    with _listeners_lock:
        listeners = list(_listeners.get(db, []))
    for listener in listeners:
        listener()


# -- editing -------------------------------------------------------------------------------


def create(
    db: Database,
    *,
    name: str,
    cron: str,
    timezone: str,
    payload: Any,
    enabled: bool,
    next_fire_at: float | None,
) -> int:
    """Store a validated schedule; returns its id. Raises NameTaken."""
    t = now()
    values = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "payload": payload,
        "enabled": enabled,
        "next_fire_at": next_fire_at if enabled else None,
        "created_at": t,
        "updated_at": t,
    }
    try:
        schedule_id: int = db.write(
            lambda conn: conn.execute(
                insert(schedules).values(values).returning(schedules.c.id)
            ).scalar_one()
        )
    except IntegrityError:  # the only unique column besides the id is the name
        raise NameTaken(name) from None
    _changed(db)
    return schedule_id


def update_schedule(
    db: Database, schedule_id: int, changes: Mapping[str, Any], next_fire: NextFire
) -> bool:
    """Apply validated ``changes``; False if there is no such schedule. Raises NameTaken.

    A pause clears the next fire time; a resume or a new cron or time zone computes it from
    now (a fire missed while paused is not made up); other changes keep it.
    """
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")

    def work(conn: Connection) -> bool:
        row = conn.execute(
            select(schedules).where(schedules.c.id == schedule_id).with_for_update()
        ).mappings()
        current = row.first()
        if current is None:
            return False
        merged = {**current, **changes}
        values: dict[str, Any] = {**changes, "updated_at": now()}
        if not merged["enabled"]:
            values["next_fire_at"] = None
        elif any(merged[k] != current[k] for k in ("cron", "timezone", "enabled")):
            values["next_fire_at"] = next_fire(merged["cron"], merged["timezone"])
        conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(values))
        return True

    try:
        found = db.write(work)
    except IntegrityError:
        raise NameTaken(str(changes.get("name"))) from None
    if found:
        _changed(db)
    return found


def delete_schedule(db: Database, schedule_id: int) -> bool:
    """Delete a schedule and its fire records (chains it started stay); False if unknown."""
    deleted = db.write(
        lambda conn: conn.execute(delete(schedules).where(schedules.c.id == schedule_id)).rowcount
    )
    return bool(deleted)


# -- reading -------------------------------------------------------------------------------


def get_schedule(db: Database, schedule_id: int) -> dict[str, Any] | None:
    """A schedule with its RECENT_FIRES latest fires (newest first) under ``fires``."""
    with db.read() as conn:
        row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).mappings()
        found = row.first()
        if found is None:
            return None
        schedule = dict(found)
        schedule["fires"] = _recent_fires(conn, schedule_id).get(schedule_id, [])
    return schedule


def list_schedules(db: Database) -> list[dict[str, Any]]:
    """Every schedule by id, each with its latest fires (two queries in all)."""
    with db.read() as conn:
        rows = [
            dict(r) for r in conn.execute(select(schedules).order_by(schedules.c.id)).mappings()
        ]
        fires = _recent_fires(conn, None)
    for row in rows:
        row["fires"] = fires.get(row["id"], [])
    return rows


def _recent_fires(conn: Connection, schedule_id: int | None) -> dict[int, list[dict[str, Any]]]:
    """Latest fires per schedule with the status of the root job each one started."""
    rank = (
        func.row_number()
        .over(partition_by=schedule_fires.c.schedule_id, order_by=schedule_fires.c.fire_time.desc())
        .label("rank")
    )
    ranked = select(schedule_fires, rank)
    if schedule_id is not None:
        ranked = ranked.where(schedule_fires.c.schedule_id == schedule_id)
    fires = ranked.subquery()
    query = (
        select(
            fires.c.schedule_id,
            fires.c.fire_time,
            fires.c.fired_at,
            fires.c.root_job_id,
            fires.c.message,
            jobs.c.status,
        )
        .select_from(fires.outerjoin(jobs, jobs.c.id == fires.c.root_job_id))
        .where(fires.c.rank <= RECENT_FIRES)
        .order_by(fires.c.schedule_id, fires.c.fire_time.desc())
    )
    found: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(query).mappings():
        found.setdefault(row["schedule_id"], []).append(dict(row))
    return found


def due(db: Database, at: float) -> list[tuple[int, float]]:
    """``(id, next fire time)`` of every enabled schedule due at ``at``, earliest first."""
    query = (
        select(schedules.c.id, schedules.c.next_fire_at)
        .where(schedules.c.enabled == true(), schedules.c.next_fire_at <= at)
        .order_by(schedules.c.next_fire_at, schedules.c.id)
    )
    with db.read() as conn:
        return [(row.id, row.next_fire_at) for row in conn.execute(query)]


def earliest_fire(db: Database) -> float | None:
    """The earliest next fire time of any enabled schedule."""
    query = select(func.min(schedules.c.next_fire_at)).where(schedules.c.enabled == true())
    with db.read() as conn:
        value = conn.execute(query).scalar()
    return float(value) if value is not None else None


# -- firing --------------------------------------------------------------------------------


def fire(
    db: Database,
    schedule_id: int,
    fire_time: float,
    at: float,
    next_fire: NextFire,
    build: BuildTree,
) -> Fire | None:
    """Serve ``fire_time`` of a schedule at clock time ``at``: one chain, in one transaction.

    Returns None when there is nothing (left) to do: another process fired it first, the
    schedule was paused, changed or deleted meanwhile. A payload that no longer validates
    (a job type that is not loaded any more) still uses up the fire time: its fire is
    recorded with the reason and no chain, instead of failing again at every check.
    """

    def work(conn: Connection) -> Fire | None:
        guard = (
            schedules.c.id == schedule_id,
            schedules.c.enabled == true(),
            schedules.c.next_fire_at == fire_time,
        )
        row = conn.execute(
            select(schedules.c.cron, schedules.c.timezone, schedules.c.payload).where(*guard)
        ).first()
        if row is None or fire_time > at:
            return None
        # The guarded advance comes first: on PostgreSQL a racing transaction waits here
        # for our commit and then finds the condition false; SQLite runs writers one by one.
        advanced = conn.execute(
            update(schedules).where(*guard).values(next_fire_at=next_fire(row.cron, row.timezone))
        ).rowcount
        if advanced != 1:
            return None
        try:
            with conn.begin_nested():
                fire_id = conn.execute(
                    insert(schedule_fires)
                    .values(schedule_id=schedule_id, fire_time=fire_time, fired_at=at)
                    .returning(schedule_fires.c.id)
                ).scalar_one()
        except IntegrityError:
            # Already served (a clock set back let it come round again): the advance stands.
            return None
        root_id, message = _submit(conn, row.payload, build)
        conn.execute(
            update(schedule_fires)
            .where(schedule_fires.c.id == fire_id)
            .values(root_job_id=root_id, message=message)
        )
        return Fire(schedule_id, fire_time, root_id, message)

    return db.write(work)


def _submit(conn: Connection, payload: Any, build: BuildTree) -> tuple[int | None, str | None]:
    """Store the chain (within a savepoint), or say why it cannot be stored."""
    try:
        root, plans = build(payload)
        with conn.begin_nested():
            return insert_tree(conn, root, plans), None
    except PayloadError as exc:
        problems = "; ".join(f"{path}: {', '.join(m)}" for path, m in exc.details.items())
        return None, f"not submitted: {exc.message}: {problems}"[:MAX_MESSAGE]
    except JoinConflict as exc:
        return None, f"not submitted: {exc}"[:MAX_MESSAGE]
