"""Alert rules and the deliveries they owe: storage, the guarded claim of due deliveries and
the record of each attempt's outcome.

Exactly one delivery per (rule, event): the unique constraint makes a second insert of the
same pair a no-op, whichever process matched the event. A dispatcher claims due deliveries
with a token and a deadline (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serializes
writers), so two dispatchers never send the same one at once; a claim whose dispatcher
died expires and the delivery is taken over.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.store.database import Database, now
from app.store.dialect import insert_ignoring_conflicts
from app.store.notification_tables import notification_deliveries as deliveries
from app.store.notification_tables import notification_rules as rules

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
EDITABLE = frozenset(
    {
        "name",
        "events",
        "channel",
        "target",
        "job_type",
        "target_object",
        "schedule",
        "model",
        "enabled",
    }
)
MAX_ERROR = 2000
RECENT_DELIVERIES = 50


class NameTaken(Exception):
    """Another rule already has this name (HTTP 409)."""


# -- rules ---------------------------------------------------------------------------------


def create_rule(db: Database, values: Mapping[str, Any]) -> int:
    t = now()
    row = {**{k: values.get(k) for k in EDITABLE}, "enabled": values.get("enabled", True)}
    row.update(active_since=t, created_at=t, updated_at=t)
    try:
        rule_id: int = db.write(
            lambda conn: conn.execute(insert(rules).values(row).returning(rules.c.id)).scalar_one()
        )
    except IntegrityError:  # the only unique column besides the id is the name
        raise NameTaken(values["name"]) from None
    return rule_id


def update_rule(db: Database, rule_id: int, changes: Mapping[str, Any]) -> bool:
    """Change a rule; enabling a disabled one makes it care about events from now on."""
    values = {k: v for k, v in changes.items() if k in EDITABLE}

    def work(conn: Connection) -> bool:
        current = conn.execute(select(rules.c.enabled).where(rules.c.id == rule_id)).first()
        if current is None:
            return False
        t = now()
        extra: dict[str, Any] = {"updated_at": t}
        if values.get("enabled") and not current.enabled:
            extra["active_since"] = t
        conn.execute(update(rules).where(rules.c.id == rule_id).values(**values, **extra))
        return True

    try:
        return db.write(work)
    except IntegrityError:
        raise NameTaken(changes.get("name", "")) from None


def delete_rule(db: Database, rule_id: int) -> bool:
    """Delete a rule and its delivery records."""

    def work(conn: Connection) -> bool:
        conn.execute(delete(deliveries).where(deliveries.c.rule_id == rule_id))
        return conn.execute(delete(rules).where(rules.c.id == rule_id)).rowcount > 0

    return db.write(work)


def get_rule(db: Database, rule_id: int) -> dict[str, Any] | None:
    with db.read() as conn:
        row = conn.execute(select(rules).where(rules.c.id == rule_id)).first()
        return dict(row._mapping) if row else None


def list_rules(db: Database, enabled_only: bool = False) -> list[dict[str, Any]]:
    query = select(rules).order_by(rules.c.id)
    if enabled_only:
        query = query.where(rules.c.enabled.is_(True))
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def enabled_rules(conn: Connection) -> list[dict[str, Any]]:
    query = select(rules).where(rules.c.enabled.is_(True)).order_by(rules.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


# -- deliveries ----------------------------------------------------------------------------


def add_deliveries(conn: Connection, owed: Iterable[Mapping[str, Any]], at: float) -> int:
    """Insert deliveries (rule_id, event_key, event_kind, payload); one already there for the
    same (rule, event) is left alone. Returns how many were new."""
    rows = [
        {**d, "status": PENDING, "attempts": 0, "next_attempt_at": at, "created_at": at}
        for d in owed
    ]
    if not rows:
        return 0
    stmt = insert_ignoring_conflicts(conn, deliveries).on_conflict_do_nothing(
        index_elements=["rule_id", "event_key"]
    )
    return len(conn.execute(stmt.returning(deliveries.c.id), rows).all())


def claim_due(db: Database, limit: int, hold_seconds: float) -> list[dict[str, Any]]:
    """Claim up to ``limit`` due deliveries for ``hold_seconds``, with their rule."""
    token = str(uuid.uuid4())

    def work(conn: Connection) -> list[dict[str, Any]]:
        t = now()
        due = (
            select(deliveries.c.id)
            .where(
                deliveries.c.status == PENDING,
                deliveries.c.next_attempt_at <= t,
                or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < t),
            )
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(claim_token=token, claimed_until=t + hold_seconds)
        )
        found = conn.execute(
            select(
                deliveries,
                rules.c.name.label("rule_name"),
                rules.c.channel,
                rules.c.target,
            )
            .select_from(deliveries.join(rules, rules.c.id == deliveries.c.rule_id))
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.id)
        )
        return [dict(r._mapping) for r in found]

    return db.write(work)


def record_attempt(
    db: Database,
    delivery: Mapping[str, Any],
    error: str | None,
    retry_in: float | None,
) -> bool:
    """Record one attempt under the delivery's claim: delivered (``error`` None), to be tried
    again in ``retry_in`` seconds, or failed for good (``retry_in`` None). Returns False when
    the claim was lost (expired and taken over) and nothing was written."""
    t = now()
    values: dict[str, Any] = {
        "attempts": deliveries.c.attempts + 1,
        "claim_token": None,
        "claimed_until": None,
    }
    if error is None:
        values.update(status=DELIVERED, delivered_at=t, last_error=None)
    elif retry_in is None:
        values.update(status=FAILED, last_error=error[:MAX_ERROR])
    else:
        values.update(next_attempt_at=t + retry_in, last_error=error[:MAX_ERROR])
    stmt = (
        update(deliveries)
        .where(
            deliveries.c.id == delivery["id"],
            deliveries.c.claim_token == delivery["claim_token"],
            deliveries.c.status == PENDING,
        )
        .values(**values)
    )
    return bool(db.write(lambda conn: conn.execute(stmt).rowcount))


def recent_deliveries(
    db: Database, rule_id: int | None = None, limit: int = RECENT_DELIVERIES
) -> list[dict[str, Any]]:
    """The newest deliveries (of one rule, or of all), with their rule's name."""
    query = (
        select(deliveries, rules.c.name.label("rule_name"))
        .select_from(deliveries.join(rules, rules.c.id == deliveries.c.rule_id))
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    if rule_id is not None:
        query = query.where(deliveries.c.rule_id == rule_id)
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def purge_settled(db: Database, older_than: float, limit: int = 1000) -> int:
    """Delete delivered and failed deliveries created before ``older_than`` (a batch)."""

    def work(conn: Connection) -> int:
        ids = list(
            conn.execute(
                select(deliveries.c.id)
                .where(
                    deliveries.c.status.in_([DELIVERED, FAILED]),
                    deliveries.c.created_at < older_than,
                )
                .limit(limit)
            ).scalars()
        )
        if ids:
            conn.execute(delete(deliveries).where(deliveries.c.id.in_(ids)))
        return len(ids)

    return db.write(work)


def delivery_counts(db: Database) -> dict[str, int]:
    with db.read() as conn:
        found = conn.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        )
        return {str(status): int(count) for status, count in found}
