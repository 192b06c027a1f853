"""Freshness policies with the reconciliation loop's own thread, seconds for minutes, on
both databases: the seed's A/B/C example (A no policy; B 5 min of lag and C 2 min, both
below A): C and A refresh about every 2 "minutes", B about every 5, B reusing A's
refreshes: never a refresh of A for B's sake, and no asset late for longer than a tick
plus its run. A late episode writes one LATE and one RECOVERED event."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from sqlalchemy import select

from app.runner.automation_loop import AutomationLoop
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.services.runs import RunService
from app.store.automation_tables import asset_events, automation_requests
from tests.automation.support import Model
from tests.helpers import wait_until

MINUTE = 1 / 60  # maximumLagMinutes for one second
TICK = 0.2


def _loop(runtime: Runtime) -> AutomationLoop:
    settings = replace(runtime.settings, automation_tick_seconds=TICK)
    return AutomationLoop(RunService(runtime.db, runtime.registry, settings))


def test_the_a_b_c_example_refreshes_a_only_as_c_needs_it(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("a", automation="reconcile")
    m.asset("b", "a", automation="reconcile", freshness={"maximumLagMinutes": 5 * MINUTE})
    m.asset("c", "a", automation="reconcile", freshness={"maximumLagMinutes": 2 * MINUTE})
    loop = _loop(runtime).start()
    started = time.time()
    worst_late: Counter[str] = Counter()
    try:

        def enough() -> bool:
            for name, view in m.view().items():
                worst_late[name] = max(worst_late[name], view["late_by"])
            return len(m.refreshes("c")) >= 10

        wait_until(enough, timeout=60, interval=0.05, what="ten refreshes of c")
    finally:
        loop.stop()
    m.settled()
    elapsed = time.time() - started
    counts = {name: len(m.refreshes(name)) for name in "abc"}
    # a serves c (every ~2 s); b (every ~5 s at most, ~3 to 5 s by a's age) reuses them.
    assert counts["a"] == counts["c"], counts
    assert 2 <= counts["b"] <= elapsed / 2.5 + 1, (counts, elapsed)
    with runtime.db.read() as conn:
        reasons = list(conn.execute(select(automation_requests.c.reason)).scalars())
    for_b_only = [r for r in reasons if r.startswith("a:") and "c (" not in r]
    assert for_b_only == [], reasons
    # Late at most a tick plus a run (the run of two no-op jobs: well under a second).
    assert max(worst_late.values()) < TICK + 1.0, worst_late


def test_a_late_episode_writes_one_late_and_one_recovered_event(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("a")  # automation off: given, refreshed by hand only
    m.asset("b", "a", freshness={"maximumLagMinutes": 0.5 * MINUTE})  # watched, not run
    m.run("a", "b")
    m.settled()
    loop = m.loop()
    loop.run_once()
    m.run("a")  # new data that b does not hold: b is late 0.5 s after it arrived
    m.settled()
    wait_until(lambda: m.view()["b"]["late"], timeout=10, what="b to be late")
    for _ in range(3):
        loop.run_once()
    m.run("b")
    m.settled()
    loop.run_once()
    loop.run_once()
    with runtime.db.read() as conn:
        kinds = list(
            conn.execute(select(asset_events.c.kind).order_by(asset_events.c.id)).scalars()
        )
    assert kinds == ["LATE", "RECOVERED"]
    assert not m.view()["b"]["late"]
