"""Reading an append-only table forward by id without missing a row that commits late.

On PostgreSQL ids come from a sequence: a transaction may take id 100, another 101, and 101
commit first. A reader that only remembered "after 101" would never see 100. The cursor
remembers such holes for a while and asks for them again; a hole left by a rolled-back
transaction is forgotten after ``GAP_SECONDS``. On SQLite writers are serialized, so there
are no holes, but the logic is the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# A transaction that inserted a row commits within this long (writes retry for at most
# background_db_wait_seconds, 60 s by default, but a row is inserted late in a transaction).
GAP_SECONDS = 120.0
# Holes remembered at most; a huge rolled-back insert does not turn into a huge IN list.
MAX_GAPS = 1000


@dataclass
class ReadCursor:
    last_id: int
    # id -> when it was first noticed missing
    gaps: dict[int, float] = field(default_factory=dict)

    def wanted(self) -> list[int]:
        """Ids below ``last_id`` still to be read if they ever commit."""
        return sorted(self.gaps)

    def advance(self, seen: Iterable[int], at: float) -> None:
        """Record the ids just read (in any order) at time ``at``."""
        ids = sorted(set(seen))
        for found in ids:
            self.gaps.pop(found, None)
        expected = self.last_id + 1
        for found in ids:
            if found < expected:
                continue
            for missing in range(max(expected, found - MAX_GAPS), found):
                self.gaps[missing] = at
            expected = found + 1
        self.last_id = max(self.last_id, expected - 1)
        for missing, since in list(self.gaps.items()):
            if at - since > GAP_SECONDS:
                del self.gaps[missing]
        if len(self.gaps) > MAX_GAPS:
            for missing in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[missing]

    def to_json(self) -> list[list[float]]:
        return [[k, v] for k, v in sorted(self.gaps.items())]

    @classmethod
    def from_json(cls, last_id: int, gaps: list[list[float]] | None) -> ReadCursor:
        return cls(last_id, {int(k): float(v) for k, v in gaps or []})
