"""What a claim took, and the arrival of the JOIN nodes among it.

A claim (app/store/claims.py) makes the JOIN nodes it took arrive in its own transaction
when it can lock their join rows without waiting (SKIP LOCKED); the others are deferred:
they arrive right after its commit (claims.settle), in a transaction that waits for
their joins holding nothing else. So no claim ever waits for a join row while holding
others: no lock convoy, no deadlock between claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row

from app.store import arrivals, joins
from app.store.firing import Hand
from app.store.join_endings import Decided

if TYPE_CHECKING:
    from app.store.claims import Claim


@dataclass
class Taken:
    """What a claim took: jobs to run, and what its JOIN nodes did."""

    claims: list[Claim] = field(default_factory=list)
    due_before: int = 0  # of ``claims``, jobs that were due before this transaction
    released: int = 0  # jobs the arrivals made claimable
    nodes: int = 0  # JOIN nodes claimed (arrived, or deferred)
    # JOIN nodes claimed whose join row another transaction holds: they arrive after this
    # transaction's commit (joins.arrive_held), so it never waits for a join's lock.
    deferred: list[int] = field(default_factory=list)
    token: str = ""  # the lease token of the claims and deferred nodes
    # JOIN nodes that decided their join, still held: they end, with the nodes that
    # waited, in a transaction after this one (join_endings.end_decided).
    decided: list[Decided] = field(default_factory=list)
    # The claim's lease (token, owner, expires, now): a firing among the arrivals may
    # hand the worker what it starts (firing.fire).
    lease: dict[str, Any] | None = None

    def arrive(
        self,
        conn: Connection,
        rows: list[Row[Any]],
        t: float,
        room: int = 0,
        locked: dict[int, Any] | None = None,
    ) -> list[Row[Any]]:
        """Make these claimed JOIN nodes arrive. A join they fire hands the worker up to
        ``room`` of the jobs it starts; returns those, as a claim returns them (counted in
        ``released``). ``locked``: join rows the statement that claimed them tried to lock
        already (the hop), None for one another transaction held."""
        if not rows:
            return []
        self.nodes += len(rows)
        if locked is not None:  # tried by the hop: the others' now
            free = {k: v for k, v in locked.items() if v is not None}
            rest = {r.join_id for r in rows} - set(locked)
            free.update(joins.lock_free(conn, rest) if rest else {})
        elif len(rows) == 1 and conn.dialect.name == "postgresql":  # a parent's own node
            join = arrivals.lock_and_record(conn, rows[0], t)
            free = {} if join is None else {join.id: join}
        else:
            free = joins.lock_free(conn, {r.join_id for r in rows})
        self.deferred.extend(r.id for r in rows if r.join_id not in free)
        arriving = [r for r in rows if r.join_id in free]
        hand = Hand(self.lease, room) if self.lease is not None and room > 0 else None
        # Nodes whose arrival row the locking statement wrote (never written twice).
        written = (getattr(j, "arrival_of", None) for j in free.values())
        recorded = {int(node) for node in written if node is not None}
        self.released += joins.arrive_claimed(
            conn, arriving, t, self.decided, self.token, free, hand, recorded
        )
        return hand.rows if hand is not None else []
