"""The one invariant checker every scenario of the battery ends with.

It reads the scenario's database (jobs, their event log, joins and arrivals), the BATTERY
journal and what the API answered, and reports each violation by category:

lost
    An accepted submission whose root is not stored, a tree with fewer jobs than submitted,
    a job that is not terminal, or not FINISHED (every battery job has attempts to spare),
    or FINISHED although its journal shows no completed run of its final attempt.
doubled
    A submission stored twice; a job released (``WAITING_FOR_PARENT -> WAITING_FOR_DISPATCH``)
    more than once, i.e. a chain link that started its next job twice; a job that entered a
    terminal status twice; with ``runs_once`` (no crash, no expired lease in the scenario), a
    job that ran more than once, i.e. was claimed by two workers.
history
    A job's event log is not one valid sequence: each event must start from the status the
    previous one ended in (so a job is never claimed while PROCESSING: no two leases at once),
    a claim adds one attempt, a hand-back removes it, nothing else changes it, and the last
    event matches the row. No job may still hold a lease.
joins_twice / joins_never
    A join must be FIRED with one FINISHED arrival from each of its JOIN nodes, one node saying
    it fired it, and its continuation released exactly once.
api
    Every 5xx answer and every request that got no answer (a 503 with ``Retry-After`` is the
    documented "database busy" answer and passes when the scenario allows it).
process
    What the scenario itself saw go wrong: a worker that died unasked, a wait that timed out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from app.domain.statuses import TERMINAL, Status, Transition
from app.store.tables import job_events, jobs, join_arrivals, joins
from tests.reliability.api import Accepted, ApiLog

TERMINAL_VALUES = {status.value for status in TERMINAL}
WAITING_FOR_PARENT = Status.WAITING_FOR_PARENT.value
WAITING_FOR_DISPATCH = Status.WAITING_FOR_DISPATCH.value
PROCESSING = Status.PROCESSING.value
CATEGORIES = ("lost", "doubled", "history", "joins_twice", "joins_never", "api", "process")


@dataclass
class Report:
    jobs: int = 0
    runs: int = 0  # journal: runs started, over all jobs
    problems: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CATEGORIES})

    def add(self, category: str, message: str) -> None:
        self.problems[category].append(message)

    def count(self, category: str) -> int:
        return len(self.problems[category])

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def describe(self, limit: int = 10) -> str:
        lines = []
        for category, messages in self.problems.items():
            for message in messages[:limit]:
                lines.append(f"{category}: {message}")
            if len(messages) > limit:
                lines.append(f"{category}: ... and {len(messages) - limit} more")
        return "\n".join(lines) or "all invariants hold"


@dataclass(frozen=True)
class Run:
    job_id: int
    attempt: int
    pid: int
    start: float
    end: float | None


def read_journal(path: Path) -> list[Run]:
    """The BATTERY journal's start/end lines paired into runs (an end may be missing)."""
    starts: dict[tuple[int, int, int], float] = {}
    ends: dict[tuple[int, int, int], float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            kind, job_id, attempt, pid, at = line.split()
            key = (int(job_id), int(attempt), int(pid))
            (starts if kind == "start" else ends)[key] = float(at)
    return [Run(*key, start, ends.get(key)) for key, start in starts.items()]


def check(
    url: str,
    accepted: list[Accepted],
    journal: Path | None = None,
    api: ApiLog | None = None,
    runs_once: bool = False,
    allow_busy: bool = False,
) -> Report:
    """Check every invariant on the scenario's database after the run."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(select(jobs).order_by(jobs.c.id)))
            events = list(conn.execute(select(job_events).order_by(job_events.c.id)))
            join_rows = list(conn.execute(select(joins).order_by(joins.c.id)))
            arrivals = list(conn.execute(select(join_arrivals)))
    finally:
        engine.dispose()
    report = Report(jobs=len(rows))
    history: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        history[event.job_id].append(event)
    runs = read_journal(journal) if journal is not None else None
    _check_submissions(report, rows, accepted)
    for row in rows:
        _check_job(report, row, history[row.id])
    _check_joins(report, rows, join_rows, arrivals, history)
    if runs is not None:
        report.runs = len(runs)
        _check_runs(report, rows, runs, runs_once)
    if api is not None:
        for failure in api.failures:
            report.add("api", failure)
        if not allow_busy:
            for busy in api.busy:
                report.add("api", f"503 (busy) where none may occur: {busy}")
    return report


def _check_submissions(report: Report, rows: list[Any], accepted: list[Accepted]) -> None:
    roots = Counter(row.target_object for row in rows if row.parent_id is None)
    sizes = Counter(row.root_id for row in rows)
    by_id = {row.id: row for row in rows}
    for item in accepted:
        label = item.submission.payload["targetObject"]
        root = by_id.get(item.root_id)
        if root is None or root.target_object != label:
            report.add("lost", f"accepted {item.submission.label} (root {item.root_id}) not stored")
            continue
        if roots[label] > 1:
            report.add("doubled", f"{item.submission.label} stored {roots[label]} times")
        if sizes[item.root_id] != item.submission.jobs:
            report.add(
                "lost",
                f"tree {item.root_id} has {sizes[item.root_id]} jobs, "
                f"{item.submission.jobs} submitted",
            )


def _check_job(report: Report, row: Any, events: list[Any]) -> None:
    name = f"job {row.id} ({row.target_object})"
    if row.status not in TERMINAL_VALUES:
        report.add("lost", f"{name} is {row.status}, not terminal")
    elif row.status != Status.FINISHED:
        report.add("lost", f"{name} ended {row.status}: {row.message}")
    if row.lease_token is not None and row.status != PROCESSING:
        report.add("history", f"{name} is {row.status} but still holds a lease")
    released = [
        e
        for e in events
        if (e.from_status, e.to_status) == (WAITING_FOR_PARENT, WAITING_FOR_DISPATCH)
    ]
    expected_releases = 0 if row.parent_id is None else 1
    if len(released) > expected_releases:
        report.add("doubled", f"{name} released {len(released)} times")
    ended = [e for e in events if e.to_status in TERMINAL_VALUES]
    if len(ended) > 1:
        report.add("doubled", f"{name} ended {len(ended)} times: {[e.to_status for e in ended]}")
    for problem in _sequence_problems(row, events):
        report.add("history", f"{name}: {problem}")


def _sequence_problems(row: Any, events: list[Any]) -> list[str]:
    """Why this event log is not one valid sequence of transitions ending at the row."""
    if not events:
        return ["no events"]
    problems = []
    first = events[0]
    if first.from_status is not None or first.reason != Transition.SUBMIT:
        problems.append(f"first event is {first.reason!r} from {first.from_status}")
    for before, event in pairwise(events):
        if event.from_status != before.to_status:
            problems.append(
                f"event {event.id} ({event.reason}) from {event.from_status} "
                f"while the job was {before.to_status}"
            )
        step = {Transition.CLAIM: 1, Transition.UNCLAIM: -1}.get(event.reason, 0)
        if event.attempt != before.attempt + step:
            problems.append(
                f"event {event.id} ({event.reason}) at attempt {event.attempt} "
                f"after attempt {before.attempt}"
            )
    last = events[-1]
    if (last.to_status, last.attempt) != (row.status, row.attempt):
        problems.append(
            f"last event says {last.to_status} attempt {last.attempt}, "
            f"the row {row.status} attempt {row.attempt}"
        )
    return problems


def _check_joins(
    report: Report,
    rows: list[Any],
    join_rows: list[Any],
    arrivals: list[Any],
    history: dict[int, list[Any]],
) -> None:
    nodes: dict[int, list[Any]] = defaultdict(list)
    children: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        if row.join_id is not None:
            nodes[row.join_id].append(row)
        if row.parent_id is not None:
            children[row.parent_id].append(row.id)
    arrived: dict[int, list[Any]] = defaultdict(list)
    for arrival in arrivals:
        arrived[arrival.join_id].append(arrival)
    for join in join_rows:
        name = f"join {join.id} ({join.scope})"
        node_ids = sorted(n.id for n in nodes[join.id])
        arrival_ids = sorted(a.job_id for a in arrived[join.id])
        outcomes = Counter(a.parent_outcome for a in arrived[join.id])
        fired_by = [n.id for n in nodes[join.id] if "; join FIRED" in (n.message or "")]
        releases = [
            sum(
                (e.from_status, e.to_status) == (WAITING_FOR_PARENT, WAITING_FOR_DISPATCH)
                for e in history[child]
            )
            for child in children.get(join.owner_job_id, [])
        ]
        if len(fired_by) > 1 or any(count > 1 for count in releases):
            report.add("joins_twice", f"{name} fired by {fired_by}, releases {releases}")
        if (
            join.state != "FIRED"
            or len(fired_by) != 1
            or not releases
            or 0 in releases
            or arrival_ids != node_ids
            or join.expected != len(node_ids)
            or outcomes != Counter({Status.FINISHED.value: len(node_ids)})
        ):
            report.add(
                "joins_never",
                f"{name} is {join.state}: {len(arrival_ids)} arrivals {dict(outcomes)} "
                f"of {join.expected} expected from nodes {len(node_ids)}, "
                f"fired by {fired_by}, continuation releases {releases}",
            )


def _check_runs(report: Report, rows: list[Any], runs: list[Run], once: bool) -> None:
    by_job: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job_id].append(run)
    for row in rows:
        if row.job_type != "BATTERY" or row.status != Status.FINISHED:
            continue
        job_runs = sorted(by_job[row.id], key=lambda r: r.start)
        if not any(r.attempt == row.attempt and r.end is not None for r in job_runs):
            report.add(
                "lost", f"job {row.id} FINISHED at attempt {row.attempt} with no completed run"
            )
        if once and len(job_runs) > 1:
            overlapping = any(
                before.end is None or after.start < before.end
                for before, after in pairwise(job_runs)
            )
            report.add(
                "doubled",
                f"job {row.id} ran {len(job_runs)} times "
                f"(pids {[r.pid for r in job_runs]}, attempts {[r.attempt for r in job_runs]})"
                + (", overlapping in time" if overlapping else ""),
            )
