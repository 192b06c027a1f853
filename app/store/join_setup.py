"""Creating a submission's joins: one row per join, shared by a batch across submissions.

Runs inside the submitting transaction, before its jobs are stored (their JOIN nodes point
at these rows) and after (the node that carries each join's next jobs is recorded).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.domain.join_plan import JoinPlan
from app.domain.join_rules import WAITING
from app.store.tables import joins


class JoinConflict(Exception):
    """A submission disagrees with a cross-submission join already stored (HTTP 409)."""


def prepare(conn: Connection, plans: list[JoinPlan], root_id: int, at: float) -> dict[int, int]:
    """Create (or, for batches, find) each planned join; returns ``id(spec) -> join id``.

    For a batch join whose next jobs an earlier submission already declared, identical
    next jobs here are dropped (they run once); different ones are a JoinConflict.
    """
    rows = _get_or_create(conn, plans, root_id, at)
    join_of: dict[int, int] = {}
    for plan in plans:
        row = rows[_scope(plan, root_id)]
        if plan.batch is not None:
            _check_batch(row, plan)
            if plan.owner is not None and row.owner_job_id is not None:
                plan.owner.next_jobs = []
                plan.owner = None
        plan.join_id = row.id
        for node in plan.nodes:
            join_of[id(node)] = row.id
    return join_of


def set_owners(conn: Connection, plans: list[JoinPlan], job_ids: dict[int, int]) -> None:
    """Record which stored JOIN node carries each join's next jobs (``id(spec) -> job id``)."""
    owned = [
        {"join": plan.join_id, "owner": job_ids[id(plan.owner)], "digest": plan.next_jobs_digest}
        for plan in plans
        if plan.owner is not None
    ]
    if owned:
        conn.execute(_SET_OWNER, owned)


_SET_OWNER = (
    update(joins)
    .where(joins.c.id == bindparam("join"), joins.c.owner_job_id.is_(None))
    .values(owner_job_id=bindparam("owner"), next_jobs_digest=bindparam("digest"))
)
# Scopes per SELECT ... IN: a model's run may plan thousands of joins.
_CHUNK = 500


def _scope(plan: JoinPlan, root_id: int) -> str:
    if plan.batch is not None:
        return f"batch:{plan.key}:{plan.batch}"
    return f"tree:{root_id}:{plan.key}"


def _get_or_create(
    conn: Connection, plans: list[JoinPlan], root_id: int, at: float
) -> dict[str, Row[Any]]:
    """The join row of every plan by scope: found, else created (all in one INSERT; a
    batch join another submission created a moment ago is found after all)."""
    scopes = {_scope(plan, root_id): plan for plan in plans}
    found = _by_scope(conn, list(scopes))
    missing = [
        _values(plan, scope, root_id, at) for scope, plan in scopes.items() if scope not in found
    ]
    if missing:
        try:
            with conn.begin_nested():
                conn.execute(insert(joins), missing)
        except IntegrityError:  # a batch join created by a concurrent submission: one by one
            for values in missing:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(joins).values(values))
                except IntegrityError:
                    pass
        found.update(_by_scope(conn, [values["scope"] for values in missing]))
    return found


def _by_scope(conn: Connection, scopes: list[str]) -> dict[str, Row[Any]]:
    found: dict[str, Row[Any]] = {}
    for i in range(0, len(scopes), _CHUNK):
        query = select(joins).where(joins.c.scope.in_(scopes[i : i + _CHUNK]))
        found.update({row.scope: row for row in conn.execute(query)})
    return found


def _values(plan: JoinPlan, scope: str, root_id: int, at: float) -> dict[str, Any]:
    return {
        "scope": scope,
        "key": plan.key,
        "batch": plan.batch,
        "root_id": None if plan.batch else root_id,
        "trigger": plan.trigger,
        "expected": plan.expected,
        "state": WAITING,
        "outcome_counts": {},
        "deadline": at + plan.timeout_seconds if plan.timeout_seconds else None,
        "created_at": at,
    }


def _check_batch(row: Row[Any], plan: JoinPlan) -> None:
    for name, stored, given in (
        ("trigger", row.trigger, plan.trigger),
        ("expect", row.expected, plan.expected),
    ):
        if stored != given:
            raise JoinConflict(
                f"join {plan.key!r} batch {plan.batch!r} has {name} {stored!r}; "
                f"this submission says {given!r}"
            )
    if (
        plan.owner is not None
        and row.next_jobs_digest is not None
        and row.next_jobs_digest != plan.next_jobs_digest
    ):
        raise JoinConflict(
            f"join {plan.key!r} batch {plan.batch!r} already has different next jobs "
            f"(declared with job {row.owner_job_id})"
        )
