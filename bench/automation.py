"""Declarative automation benchmark: reconciliation ticks on a big model, and the A/B/C
freshness example over an hour of scaled time.

Run ``python -m bench.automation`` (``make bench-automation``). Like ``bench.core`` it uses a
fresh SQLite file (WAL, ``synchronous=NORMAL``, product defaults) or, with
``--database-url``, a throw-away PostgreSQL database created next to the one named and
dropped afterwards. The real ``AutomationLoop`` ticks (``run_once``, ``tick_model``) and the
real ``WorkerPool`` (4 workers) runs the NOOP refreshes.

1. ticks: a model of N assets (``--assets 2000``) in a random DAG (``--seed 12``): the
   first ``--sources`` assets of a hidden order are source assets (the roots); every other
   asset is a NOOP job under ``automation: reconcile`` without a freshness policy, with 2
   or 3 upstreams drawn from the assets before it (2 twice as often as 3). Every source is
   observed once and the first tick refreshes everything (one run, run to its end); the
   tick after it records the new versions. Then:

   a. the idle tick (nothing changed since the last tick): ``AutomationLoop.run_once``
      (observe due sources, list the models, tick the one model) and the tick's own
      transaction (``db.write(tick_model)``), each ``--idle-ticks`` times: median, p99, and
      SQL statements per tick (a ``before_cursor_execute`` listener on the engine, this
      thread only; SQLite's ``BEGIN IMMEDIATE`` is one of them) and transactions;
   b. a source's new observation (``automation_reads.record_observation``, the store call
      behind ``POST .../observations``), then the tick that sees it (``run_once``): it
      requests one run; the run is left to end on the workers, then the tick that records
      its versions (the "settle" tick) runs and one idle tick checks that all is quiet
      again. Timed: the requesting tick and the settle tick (median, p99), the assets
      evaluated against the source's descendants (computed here from the DAG), the
      requests, statements per tick. ``--change-reps`` times on the source with the fewest
      descendants, ``--large-reps`` times on the one with the most.

2. abc: A (no policy), B (``maximumLagMinutes`` 5) and C (2), B and C below A, all under
   ``reconcile``, no cron; one scaled minute is ``--minute-seconds`` real seconds (default
   1: the hour takes 60 s), the loop ticks every ``--tick-seconds`` (default 0.25) on its
   own thread (``AutomationLoop.start``), the pool runs the jobs. Every tick period the main
   thread reads the assets as ``GET /models/{id}/assets`` does (``settle_now`` +
   ``annotate``) and keeps each asset's largest ``lateBy``. Then: refreshes per asset
   against the minimum its policy needs, their spacing, the reasons A ran for, and the LATE
   events.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import pstats
import random
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy import event, null, select, update

from app.runner.automation_loop import AutomationLoop
from app.services.runs import RunService
from app.store import automation, automation_reads, graph_changes, graphs
from app.store.automation_tables import asset_events, automation_requests, automation_ticks
from app.store.tables import assets, jobs, run_assets, runs
from bench.core import (
    Backend,
    Harness,
    Options,
    Report,
    load_average,
    machine,
    ms,
    pct,
    print_report,
)

NOOP = {"targetObject": "x.NOOP"}
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


class LiveReport(Report):
    """A report that also prints each figure as it comes (runs take minutes)."""

    def add(self, scenario: str, metric: str, value: str, target: str = "") -> None:
        super().add(scenario, metric, value, target)
        print(f"  [{time.strftime('%H:%M:%S')}] {scenario} | {metric}: {value}", flush=True)


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dag:
    sources: list[str]
    names: list[str]  # every asset, sources first (the hidden order)
    ups: dict[str, list[str]]

    def descendants(self, name: str) -> set[str]:
        downs: dict[str, list[str]] = {n: [] for n in self.names}
        for down, ups in self.ups.items():
            for up in ups:
                downs[up].append(down)
        seen: set[str] = set()
        stack = [name]
        while stack:
            for d in downs[stack.pop()]:
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen


def random_dag(assets: int, sources: int, seed: int) -> Dag:
    """Sources first, then job assets with 2 or 3 upstreams among the assets before them."""
    rng = random.Random(seed)
    names = [f"s{i:03d}" for i in range(sources)] + [f"a{i:04d}" for i in range(assets - sources)]
    ups: dict[str, list[str]] = {}
    for k, name in enumerate(names[sources:], start=sources):
        count = min(k, rng.choice((2, 2, 3)))
        ups[name] = sorted(names[i] for i in rng.sample(range(k), count))
    return Dag(names[:sources], names, ups)


def build_model(h: Harness, dag: Dag) -> tuple[int, dict[str, int]]:
    """The model in one transaction (``graph_changes.replace_graph``, as a graph file)."""
    model_id = graphs.create_model(h.db, "bench", None)
    rows: list[dict[str, Any]] = [{"name": n, "kind": "source"} for n in dag.sources]
    rows += [{"name": n, "job": dict(NOOP), "automation": "reconcile"} for n in dag.ups]
    edges = [(up, down) for down, ups in dag.ups.items() for up in ups]
    graph_changes.replace_graph(h.db, model_id, rows, edges)
    without_observer(h, model_id)
    with h.db.read() as conn:
        found = conn.execute(
            select(assets.c.name, assets.c.id).where(assets.c.model_id == model_id)
        ).all()
    return model_id, {r.name: r.id for r in found}


def without_observer(h: Harness, model_id: int) -> None:
    """Store the sources' missing observer as SQL NULL. The store writes ``observe: None``
    as the JSON text ``null`` (a JSON column without ``none_as_null``), which
    ``observers.observe_due`` selects (``observe IS NOT NULL``) and then fails on
    (``None["path"]``): every ``run_once`` would raise before ticking any model."""
    with h.db.engine.begin() as conn:
        conn.execute(
            update(assets)
            .where(assets.c.model_id == model_id, assets.c.kind == "source")
            .values(observe=null())
        )


# -- counting statements -----------------------------------------------------------------


class Statements:
    """SQL statements and commits of the calling thread (the pool's threads are left out)."""

    def __init__(self, h: Harness) -> None:
        self.engine = h.db.engine
        self.thread = threading.get_ident()
        self.count = 0
        self.commits = 0
        self.kinds: Counter[str] = Counter()

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.count += 1
            words = statement.split()
            kind = words[0].upper() if words else "?"
            table = _TABLE.search(statement)
            self.kinds[f"{kind} {table.group(1) if table else ''}".strip()] += 1

    def _commit(self, _conn: Any) -> None:
        if threading.get_ident() == self.thread:
            self.commits += 1

    @contextmanager
    def listening(self) -> Iterator[Statements]:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "commit", self._commit)
        try:
            yield self
        finally:
            event.remove(self.engine, "before_cursor_execute", self._before)
            event.remove(self.engine, "commit", self._commit)

    def take(self) -> tuple[int, int]:
        found = self.count, self.commits
        self.count = self.commits = 0
        return found


def loop_for(h: Harness, tick_seconds: float) -> AutomationLoop:
    settings = replace(h._settings, automation_tick_seconds=tick_seconds)
    return AutomationLoop(RunService(h.db, h.runtime.registry, settings))


def root_of(h: Harness, run_id: int) -> int:
    with h.db.read() as conn:
        query = select(runs.c.root_job_id).where(runs.c.id == run_id)
        return int(conn.execute(query).scalar_one())


def drain(h: Harness, loop: AutomationLoop, limit: int = 50) -> tuple[int, int]:
    """Tick, and wait for each tick's run, until a tick finds nothing to evaluate; returns
    (ticks that requested a run, assets they requested). Both 0 when all is quiet."""
    runs_seen = assets_seen = 0
    for _ in range(limit):
        ticks = loop.run_once()
        if not ticks:
            return runs_seen, assets_seen
        for tick in ticks:
            if tick.run_id is not None:
                runs_seen += 1
                assets_seen += len(tick.requested)
                h.wait_done(root_of(h, tick.run_id))
    raise RuntimeError(f"automation still not quiet after {limit} ticks")


def spread(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} / {ms(pct(values, 99))}"


def counts(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high} (median {statistics.median(values):g})"


# -- 1. ticks over a big model ------------------------------------------------------------


def run_ticks(backend: Backend, opts: Options, args: argparse.Namespace, report: Report) -> None:
    dag = random_dag(args.assets, args.sources, args.seed)
    label = f"1 ticks ({args.assets:,} assets, {sum(map(len, dag.ups.values())):,} deps)"
    with backend.fresh("autotick") as url:
        h = Harness(url, opts, "autotick")
        try:
            t0 = time.perf_counter()
            model_id, ids = build_model(h, dag)
            report.add(
                label, "build the model (replace_graph)", f"{time.perf_counter() - t0:.2f} s"
            )
            # A new tick slot per call (a tick takes more than a millisecond).
            loop = loop_for(h, 0.001)
            h.start_pool()
            version = iter(range(1, 1_000_000))
            for source in dag.sources:
                automation_reads.record_observation(
                    h.db, model_id, ids[source], f"v{next(version)}", time.time()
                )
            t0 = time.perf_counter()
            first = loop.run_once()
            tick_s = time.perf_counter() - t0
            assert len(first) == 1 and first[0].run_id is not None, first
            t1 = time.perf_counter()
            h.wait_done(root_of(h, first[0].run_id))
            report.add(
                label,
                "first tick: evaluated / requested / tick / run wall",
                f"{first[0].evaluated:,} / {len(first[0].requested):,} / {tick_s:.2f} s / "
                f"{time.perf_counter() - t1:.1f} s",
            )
            t0 = time.perf_counter()
            after = loop.run_once()
            report.add(
                label,
                "the tick recording the first run: evaluated / requested / tick",
                f"{after[0].evaluated:,} / {len(after[0].requested)} / "
                f"{ms(time.perf_counter() - t0)}",
            )
            if after[0].requested:
                assert after[0].run_id is not None
                h.wait_done(root_of(h, after[0].run_id))
            extra_runs, extra_assets = drain(h, loop)
            extra_runs += bool(after[0].requested)
            extra_assets += len(after[0].requested)
            report.add(
                label,
                "refreshed again before all was quiet: runs / asset refreshes",
                f"{extra_runs} / {extra_assets:,}",
                "0 / 0",
            )
            idle_ticks(h, loop, model_id, args.idle_ticks, label, report)
            by_size = sorted(dag.sources, key=lambda s: len(dag.descendants(s)))
            for source, reps, what in (
                (by_size[0], args.change_reps, "fewest"),
                (by_size[-1], args.large_reps, "most"),
            ):
                if reps:
                    change_ticks(
                        h,
                        loop,
                        dag,
                        model_id,
                        ids,
                        source,
                        reps,
                        what,
                        version,
                        report,
                        args.profile,
                    )
        finally:
            h.close(report)


def idle_ticks(
    h: Harness, loop: AutomationLoop, model_id: int, n: int, label: str, report: Report
) -> None:
    stmts = Statements(h)
    settings = automation.TickSettings(0.001, 3, "bench")
    build = RunService(h.db, h.runtime.registry, h._settings).builder("admin")
    loop_times, tick_times = [], []
    loop_stmts, tick_stmts, loop_tx, tick_tx = [], [], [], []
    busy = 0
    with stmts.listening():
        for _ in range(n):
            stmts.take()
            t0 = time.perf_counter()
            done = loop.run_once()
            loop_times.append(time.perf_counter() - t0)
            s, c = stmts.take()
            loop_stmts.append(s)
            loop_tx.append(c)
            busy += bool(done)
            t0 = time.perf_counter()
            result = h.db.write(
                partial(
                    automation.tick_model,
                    model_id=model_id,
                    at=time.time(),
                    settings=settings,
                    build=build,
                )
            )
            tick_times.append(time.perf_counter() - t0)
            s, c = stmts.take()
            tick_stmts.append(s)
            tick_tx.append(c)
            busy += result is not None
    report.add(label, f"a idle tick, run_once: median / p99 of {n}", spread(loop_times), "< 20 ms")
    report.add(
        label,
        "a idle tick, run_once: SQL statements / commits",
        f"{counts(loop_stmts)} / {counts(loop_tx)}",
    )
    report.add(
        label, f"a idle tick, tick_model transaction: median / p99 of {n}", spread(tick_times)
    )
    report.add(
        label,
        "a idle tick, tick_model: SQL statements / commits",
        f"{counts(tick_stmts)} / {counts(tick_tx)}",
    )
    report.add(
        label,
        "a idle tick, max (run_once / tick_model)",
        f"{ms(max(loop_times))} / {ms(max(tick_times))}",
    )
    if busy:
        report.notes.append(f"ticks: {busy} of {2 * n} idle ticks evaluated something")


def change_ticks(
    h: Harness,
    loop: AutomationLoop,
    dag: Dag,
    model_id: int,
    ids: dict[str, int],
    source: str,
    reps: int,
    what: str,
    version: Iterator[int],
    report: Report,
    profile: bool = False,
) -> None:
    below = dag.descendants(source)
    label = f"1b one source's new observation ({source}: {len(below):,} descendants, the {what})"
    stmts = Statements(h)
    ask_times, settle_times, observe_times, run_walls = [], [], [], []
    evaluated, requested, ask_stmts, settle_stmts, settle_evaluated = [], [], [], [], []
    problems: list[str] = []
    again_runs: list[int] = []
    again_assets: list[int] = []
    profiles: list[tuple[str, cProfile.Profile]] = []
    ask_kinds: Counter[str] = Counter()
    settle_kinds: Counter[str] = Counter()
    with stmts.listening():
        for rep in range(reps):
            t0 = time.perf_counter()
            new = automation_reads.record_observation(
                h.db, model_id, ids[source], f"v{next(version)}", time.time()
            )
            observe_times.append(time.perf_counter() - t0)
            assert new
            stmts.take()
            stmts.kinds.clear()
            profiler = cProfile.Profile() if profile and rep == reps - 1 else None
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            ticks = loop.run_once()
            ask_times.append(time.perf_counter() - t0)
            if profiler is not None:
                profiler.disable()
                profiles.append(("requesting", profiler))
            ask_stmts.append(stmts.take()[0])
            ask_kinds = Counter(stmts.kinds)
            if len(ticks) != 1 or ticks[0].run_id is None:
                problems.append(f"rep {rep}: the tick after the observation gave {ticks}")
                continue
            tick = ticks[0]
            evaluated.append(tick.evaluated)
            requested.append(len(tick.requested))
            if set(tick.requested) != below:
                extra = sorted(set(tick.requested) - below)[:5]
                left = sorted(below - set(tick.requested))[:5]
                problems.append(f"rep {rep}: requested not the descendants: +{extra} -{left}")
            t0 = time.perf_counter()
            assert tick.run_id is not None
            h.wait_done(root_of(h, tick.run_id))
            run_walls.append(time.perf_counter() - t0)
            stmts.take()
            stmts.kinds.clear()
            profiler = cProfile.Profile() if profile and rep == reps - 1 else None
            t0 = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            settled = loop.run_once()
            settle_times.append(time.perf_counter() - t0)
            if profiler is not None:
                profiler.disable()
                profiles.append(("settle", profiler))
            settle_stmts.append(stmts.take()[0])
            settle_kinds = Counter(stmts.kinds)
            if len(settled) != 1:
                problems.append(f"rep {rep}: the settle tick gave {settled}")
                continue
            settle_evaluated.append(settled[0].evaluated)
            if settled[0].run_id is not None:
                h.wait_done(root_of(h, settled[0].run_id))
            extra_runs, extra_assets = drain(h, loop)
            again_runs.append(extra_runs + (settled[0].run_id is not None))
            again_assets.append(extra_assets + len(settled[0].requested))
    n = len(ask_times)
    report.add(label, "observe (record_observation): median", ms(statistics.median(observe_times)))
    report.add(label, f"the requesting tick (run_once): median / p99 of {n}", spread(ask_times))
    report.add(
        label,
        "  evaluated / requested / SQL statements",
        f"{counts(evaluated)} / {counts(requested)} / {counts(ask_stmts)}",
        f"evaluated = {len(below) + 1} (the source + its descendants)",
    )
    report.add(
        label, "the run, tick -> last job ended: median", f"{statistics.median(run_walls):.2f} s"
    )
    report.add(
        label, f"the settle tick (records the versions): median / p99 of {n}", spread(settle_times)
    )
    report.add(
        label,
        "  evaluated / SQL statements",
        f"{counts(settle_evaluated or [0])} / {counts(settle_stmts)}",
    )
    report.add(
        label,
        "refreshed again before all was quiet: runs / asset refreshes",
        f"{counts(again_runs or [0])} / {counts(again_assets or [0])}",
        "0 / 0",
    )
    for what_tick, kinds in (("requesting", ask_kinds), ("settle", settle_kinds)):
        top = ", ".join(f"{k} {n}" for k, n in kinds.most_common(8))
        report.notes.append(f"{label}: statements of the last {what_tick} tick: {top}")
    for what_tick, profiler in profiles:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("cumulative").print_stats(30)
        report.notes.append(f"{label}: cProfile of the last {what_tick} tick:\n{out.getvalue()}")
    for p in problems[:10]:
        report.notes.append(f"{label}: {p}")


# -- 2. the A/B/C example ------------------------------------------------------------------


def run_abc(backend: Backend, opts: Options, args: argparse.Namespace, report: Report) -> None:
    minute = args.minute_seconds
    hour = 60 * minute
    lag = {"A": None, "B": 5, "C": 2}
    label = (
        f"2 A/B/C, one scaled hour (1 min = {minute:g} s, tick {args.tick_seconds:g} s "
        f"= {args.tick_seconds / minute * 60:g} scaled s)"
    )
    with backend.fresh("abc") as url:
        h = Harness(url, opts, "abc")
        try:
            model_id = graphs.create_model(h.db, "abc", None)
            ids: dict[str, int] = {}
            for name, ups in (("A", ()), ("B", ("A",)), ("C", ("A",))):
                row: dict[str, Any] = {"name": name, "job": dict(NOOP), "automation": "reconcile"}
                if lag[name] is not None:
                    # Seconds for minutes: the policy's lag in scaled minutes.
                    row["freshness"] = {"maximumLagMinutes": lag[name] * minute / 60}
                ids[name] = graph_changes.create_asset(h.db, model_id, row)
                for up in ups:
                    graph_changes.add_dependency(h.db, model_id, ids[up], ids[name])
            names = {i: n for n, i in ids.items()}
            h.start_pool()
            loop = loop_for(h, args.tick_seconds)
            max_late = dict.fromkeys(ids, 0.0)
            late_polls = Counter[str]()
            polls = 0
            start = time.time()
            loop.start()
            try:
                time.sleep(args.tick_seconds / 2)
                while time.time() - start < hour:
                    rows = graphs.list_assets(h.db, model_id) or []
                    automation_reads.settle_now(h.db, model_id, 3)
                    automation_reads.annotate(h.db, model_id, rows, time.time())
                    polls += 1
                    for r in rows:
                        if r["late"]:
                            late_polls[r["name"]] += 1
                        max_late[r["name"]] = max(max_late[r["name"]], r["late_by"])
                    time.sleep(args.tick_seconds)
            finally:
                loop.stop()
            end = time.time()
            h.wait_done()
            automation_reads.settle_now(h.db, model_id, 3)
            with h.db.read() as conn:
                refreshes = conn.execute(
                    select(
                        run_assets.c.asset,
                        run_assets.c.run_id,
                        run_assets.c.reason,
                        jobs.c.status,
                        jobs.c.started_at,
                        jobs.c.finished_at,
                    )
                    .join(jobs, jobs.c.id == run_assets.c.job_id)
                    .where(run_assets.c.model_id == model_id, run_assets.c.own.is_(True))
                    .order_by(jobs.c.started_at)
                ).all()
                requests = conn.execute(
                    select(automation_requests.c.asset_id, automation_requests.c.reason)
                ).all()
                events = conn.execute(
                    select(asset_events.c.asset_id, asset_events.c.kind).where(
                        asset_events.c.model_id == model_id
                    )
                ).all()
                ticks = conn.execute(
                    select(automation_ticks.c.id).where(automation_ticks.c.model_id == model_id)
                ).all()
        finally:
            h.close(report)
    span = end - start
    report.add(
        label,
        "scaled time run / evaluated ticks / GET polls",
        f"{span / minute:.1f} min / {len(ticks)} / {polls}",
    )
    minimum = {"A": span / minute / 2, "B": span / minute / 5, "C": span / minute / 2}
    for name in ("A", "B", "C"):
        mine = [r for r in refreshes if r.asset == name]
        starts = [r.started_at for r in mine if r.started_at is not None]
        gaps = [(b - a) / minute for a, b in itertools.pairwise(starts)]
        bad = Counter(r.status for r in mine if r.status != "FINISHED")
        note = f" ({dict(bad)} not FINISHED)" if bad else ""
        target = {
            "A": "as many as C needs: 30 (+1 first)",
            "B": "12 (hour / 5 min) (+1 first)",
            "C": "30 (hour / 2 min) (+1 first)",
        }[name]
        report.add(
            label,
            f"{name} refreshes (minimum {minimum[name]:.1f}){note}",
            f"{len(mine)}",
            target,
        )
        if gaps:
            report.add(
                label,
                f"  {name} spacing, scaled min: median (min-max)",
                f"{statistics.median(gaps):.2f} ({min(gaps):.2f}-{max(gaps):.2f})",
            )
        report.add(
            label,
            f"  {name} max lateBy seen / polls late / LATE events",
            f"{max_late[name] / minute * 60:.1f} scaled s / {late_polls[name]} / "
            f"{sum(1 for e in events if names.get(e.asset_id) == name and e.kind == 'LATE')}",
            "<= a tick + a run" if lag[name] else "",
        )
    members: dict[int, set[str]] = {}
    for ref in refreshes:
        members.setdefault(ref.run_id, set()).add(ref.asset)
    shapes = Counter("+".join(sorted(m)) for m in members.values())
    report.add(
        label,
        "runs (by the assets they refresh)",
        ", ".join(f"{k} {n}" for k, n in sorted(shapes.items())),
    )
    reasons = Counter(r.reason for r in requests if names.get(r.asset_id) == "A")
    for_b_only = sum(n for reason, n in reasons.items() if "B" in reason and "C" not in reason)
    report.add(label, "A requested for B's sake only", str(for_b_only), "0")
    for reason, n in reasons.most_common():
        report.notes.append(f"A/B/C: A requested {n}x: {reason!r}")
    for name in ("B", "C"):
        why = Counter(_shape(r.reason) for r in requests if names.get(r.asset_id) == name)
        for reason, n in why.most_common():
            report.notes.append(f"A/B/C: {name} requested {n}x: {reason!r}")


def _shape(reason: str | None) -> str:
    """A reason without its numbers (they move every time)."""
    if reason is None:
        return "None"
    return "".join("#" if ch.isdigit() else ch for ch in reason)


# -- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.automation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite file)")
    parser.add_argument("--only", default="ticks,abc", help="comma-separated: ticks,abc")
    parser.add_argument("--assets", type=int, default=2_000)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--idle-ticks", type=int, default=200)
    parser.add_argument("--change-reps", type=int, default=20)
    parser.add_argument("--large-reps", type=int, default=3)
    parser.add_argument("--minute-seconds", type=float, default=1.0)
    parser.add_argument("--tick-seconds", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the last requesting and settle tick"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    opts = Options(
        workers=args.workers,
        poll_seconds=args.poll_ms / 1000,
        sql_stats=False,
        profile_dir=None,
        timeout=args.timeout,
    )
    only = set(args.only.split(","))
    backend = Backend(args.database_url)
    report = LiveReport()
    try:
        print("jobchain automation benchmark")
        for line in machine(backend, opts):
            print(f"  {line}")
        print(flush=True)
        if "ticks" in only:
            run_ticks(backend, opts, args, report)
        if "abc" in only:
            run_abc(backend, opts, args, report)
    finally:
        backend.close()
    print_report(report)
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
