"""The chain page's Gantt-like timeline: when each job waited, queued, ran and ended.

Positions are in units of 1/1000 of the chain's span (an SVG viewBox 1000 wide), so the
template draws bars without any inline style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDTH = 1000.0
MIN_RUN = 3.0


@dataclass(frozen=True)
class Segment:
    kind: str  # "waiting" (for its parent), "queued" (ready, not claimed) or "running"
    x: float
    width: float


@dataclass(frozen=True)
class Span:
    start: float
    end: float

    def at(self, t: float) -> float:
        length = max(self.end - self.start, 1e-9)
        return round(min(max((t - self.start) / length, 0.0), 1.0) * WIDTH, 1)


def chain_span(nodes: list[dict[str, Any]], now: float) -> Span:
    start = min(n["created_at"] for n in nodes)
    ends = [n["finished_at"] or now for n in nodes if n["started_at"] or n["finished_at"]]
    return Span(start, max([start + 0.001, *ends]))


def segments(node: dict[str, Any], span: Span, now: float) -> list[Segment]:
    """The bar of one job: waiting for its parent until ready, queued until a worker
    started it, running until it ended (or now). A job that never became ready (skipped,
    cancelled) only waited. After a retry only the latest attempt is drawn."""
    created, ready = node["created_at"], node["ready_at"]
    started, ended = node["started_at"], node["finished_at"]
    if started is not None and ready is not None and started < ready:
        started = None  # the start of an attempt before the latest retry
    parts = [("waiting", created, ready or ended or now)]
    if ready is not None:
        parts.append(("queued", ready, started or ended or now))
    if started is not None:
        parts.append(("running", started, ended or now))
    found = []
    for kind, begin, finish in parts:
        x = span.at(begin)
        width = span.at(finish) - x
        if kind == "running" and width < MIN_RUN:  # a quick job is still visible
            width, x = MIN_RUN, min(x, WIDTH - MIN_RUN)
        if width > 0:
            found.append(Segment(kind, x, width))
    return found
