"""The chain page's Gantt-like timeline: when each job waited, queued, ran and ended.

Every attempt of a job is drawn, read from its events: when it became ready, when a worker
claimed it, and when its function really started and ended (the worker's stamps, carried on
the event that ended the attempt). A job that waited in its worker's batch is drawn queued
until its function started, not running from its claim.

Positions are in units of 1/1000 of the chain's span (an SVG viewBox 1000 wide), so the
template draws bars without any inline style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.statuses import Status, Transition

WIDTH = 1000.0
MIN_RUN = 3.0

_READY = Status.WAITING_FOR_DISPATCH.value
_RUNNING = Status.PROCESSING.value


@dataclass(frozen=True)
class Segment:
    kind: str  # "waiting" (for its parent), "queued" (ready, not started) or "running"
    x: float
    width: float
    status: str | None = None  # a run: how its attempt ended (PROCESSING: still running)
    attempt: int | None = None  # a run: its attempt number


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, as its events tell it."""

    number: int
    ready: float | None  # when it became ready to run before this claim
    claimed: float
    started: float | None  # None: it never started (cancelled while it waited)
    ended: float | None  # None: still running
    status: str  # how it ended (FAILED when it failed and was retried), or PROCESSING
    outcome: str | None = None  # the move that ended it, with its reason


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
    ends += [a.ended or now for n in nodes for a in attempts(n)]
    return Span(start, max([start + 0.001, *ends]))


def attempts(node: dict[str, Any]) -> list[Attempt]:
    """The job's attempts, oldest first, from its events (a hand-back of a job that never
    started is no attempt)."""
    return _read(node)[0]


def _read(node: dict[str, Any]) -> tuple[list[Attempt], float | None]:
    """The attempts, and when the job became ready again after the last (None: it did
    not: never ready, or claimed since)."""
    found: list[Attempt] = []
    ready: float | None = None
    claim: tuple[int, float | None, float] | None = None  # (number, ready, claimed)
    for event in node.get("events", ()):
        source, target = event["from_status"], event["to_status"]
        if source == _RUNNING and target != _RUNNING and claim is not None:
            if event["reason"] == Transition.UNCLAIM.value:
                ready, claim = claim[1], None  # handed back unstarted: ready all along
                continue
            found.append(_ended(node, claim, event))
            claim = None
        if target == _READY:
            ready = event["at"]
        elif source == _READY and target == _RUNNING:
            claim, ready = (event["attempt"], ready, event["at"]), None
    if claim is not None:
        number, became_ready, claimed = claim
        started = _row_start(node, number, claimed)
        found.append(Attempt(number, became_ready, claimed, started, None, _RUNNING))
    return found, ready


def _ended(node: dict[str, Any], claim: tuple[int, float | None, float], event: Any) -> Attempt:
    number, ready, claimed = claim
    started = event["started_at"]
    if started is None:  # written before the event carried it, or a JOIN node's arrival
        started = _row_start(node, number, claimed)
    ended = event["finished_at"] if event["finished_at"] is not None else event["at"]
    status = event["to_status"] if event["to_status"] != _READY else Status.FAILED.value
    outcome = f"{event['to_status']} ({event['reason']})"
    return Attempt(number, ready, claimed, started, ended, status, outcome)


def _row_start(node: dict[str, Any], number: int, claimed: float) -> float | None:
    """The job row's start, if it is this attempt's (the row holds the latest one's)."""
    started = node.get("started_at")
    if number == node.get("attempt") and started is not None and started >= claimed:
        return float(started)
    return None


def segments(node: dict[str, Any], span: Span, now: float) -> list[Segment]:
    """The bar of one job: waiting for its parent until ready; then for each attempt
    queued until its function started (claimed or not) and running until it ended (or
    now); queued again while a retry waits. A job that never became ready (skipped,
    cancelled) only waited."""
    runs, ready = _read(node)
    ended = node["finished_at"]
    first_ready = _first(runs[0].ready, runs[0].claimed) if runs else ready
    parts: list[tuple[str, float, float, Attempt | None]] = [
        ("waiting", node["created_at"], _first(first_ready, ended, now), None)
    ]
    for run in runs:
        if run.ready is not None:
            parts.append(("queued", run.ready, _first(run.started, run.ended, now), None))
        if run.started is not None:
            parts.append(("running", run.started, _first(run.ended, now), run))
    if ready is not None:  # ready and not claimed (again: a retry waits)
        parts.append(("queued", ready, _first(ended, now), None))
    found = []
    for kind, begin, finish, of in parts:
        x = span.at(begin)
        width = span.at(finish) - x
        if kind == "running" and width < MIN_RUN:  # a quick job is still visible
            width, x = MIN_RUN, min(x, WIDTH - MIN_RUN)
        if width > 0:
            if of is None:
                found.append(Segment(kind, x, width))
            else:
                found.append(Segment(kind, x, width, of.status, of.number))
    return found


def _first(*times: float | None) -> float:
    """The first time known (the last one always is)."""
    return next(t for t in times if t is not None)
