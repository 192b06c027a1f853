"""Idempotency keys: a submission retried with the same key stores one chain, not two.

The key is recorded in the same transaction as the tree, and its primary key decides who
stores: on PostgreSQL a second ``INSERT ... ON CONFLICT DO NOTHING`` of the same key waits
for the first transaction and then inserts nothing; on SQLite ``BEGIN IMMEDIATE`` already
runs them one after another. The loser reads the winner's row and answers with its job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from app.domain import jsontext
from app.domain.join_plan import JoinPlan
from app.domain.payload import JobSpec, unwrap
from app.store import submission
from app.store.database import Database, now
from app.store.dialect import insert_ignoring_conflicts
from app.store.tables import idempotency_keys

MAX_KEY_LENGTH = 255
_PURGE_BATCH = 1000


class KeyReused(Exception):
    """The key was used for a different body within its lifetime (HTTP 422)."""


def valid_key(key: str) -> bool:
    """1 to 255 printable characters (what the column holds and a log line can show)."""
    return 1 <= len(key) <= MAX_KEY_LENGTH and key.isprintable()


def body_hash(body: Any) -> str:
    """SHA-256 of the submitted ChainedJobInfo as canonical JSON (sorted keys, no spaces):
    key order, whitespace and the ``{"data": ...}`` envelope do not make it another body."""
    canonical = jsontext.dumps(  # the json module's text, at any depth
        unwrap(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submitted:
    root_id: int
    replayed: bool  # True: an earlier submission with this key and body; nothing was stored


def submit_once(
    db: Database,
    root: JobSpec,
    plans: list[JoinPlan],
    key: str,
    body_hash: str,
    ttl_seconds: float,
) -> Submitted:
    """Store the tree unless ``key`` already stored one (within ``ttl_seconds``).

    The key and the tree commit together or not at all. A key older than the TTL does not
    count: it is replaced. Raises :class:`KeyReused` if the key came with another body.
    """

    def work(conn: Connection) -> Submitted:
        t = now()
        mine = idempotency_keys.c.key == key
        conn.execute(delete(idempotency_keys).where(mine, _expired(t, ttl_seconds)))
        row = {"key": key, "body_hash": body_hash, "job_id": 0, "created_at": t}
        claimed = conn.execute(
            insert_ignoring_conflicts(conn, idempotency_keys)
            .values(row)
            .on_conflict_do_nothing(index_elements=[idempotency_keys.c.key])
            .returning(idempotency_keys.c.key)
        ).first()
        if claimed is not None:
            root_id = submission.insert_tree(conn, root, plans)
            conn.execute(update(idempotency_keys).where(mine).values(job_id=root_id))
            return Submitted(root_id, replayed=False)
        winner = conn.execute(
            select(idempotency_keys.c.body_hash, idempotency_keys.c.job_id).where(mine)
        ).one()
        if winner.body_hash != body_hash:
            raise KeyReused(
                f"Idempotency-Key {key!r} was already used for a different body "
                f"(job {winner.job_id})"
            )
        return Submitted(int(winner.job_id), replayed=True)

    submitted = db.write(work)
    if not submitted.replayed:
        db.notify_dispatchable()
    return submitted


def purge_expired(db: Database, ttl_seconds: float) -> int:
    """Delete keys older than ``ttl_seconds``, a batch per transaction; returns how many."""

    def work(conn: Connection) -> int:
        expired = _expired(now(), ttl_seconds)
        batch = (
            select(idempotency_keys.c.key)
            .where(expired)
            .order_by(idempotency_keys.c.created_at)
            .limit(_PURGE_BATCH)
        )
        keys = list(conn.execute(batch).scalars())
        if keys:
            # Still expired at delete time: a key re-issued meanwhile is kept.
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key.in_(keys), expired))
        return len(keys)

    total = 0
    while (purged := db.write(work)) > 0:
        total += purged
        if purged < _PURGE_BATCH:
            break
    return total


def _expired(at: float, ttl_seconds: float) -> Any:
    return idempotency_keys.c.created_at < at - ttl_seconds
