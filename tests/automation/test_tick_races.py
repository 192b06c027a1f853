"""Ticks racing, on both databases: two threads ticking the same slot evaluate it once;
two processes running the loop launch nothing twice; a process that dies mid-tick
(before its COMMIT) leaves nothing behind, and the next tick does the work once."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.failpoints import EXIT_CODE
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import automation_reads
from app.store.automation_tables import automation_requests, automation_ticks
from app.store.tables import jobs, run_assets, runs
from tests.automation.support import Model
from tests.helpers import wait_until


def _source_model(runtime: Runtime) -> Model:
    m = Model.create(runtime)
    m.asset("src", kind="source")
    m.asset("clean", "src", automation="reconcile")
    return m


def _observe(m: Model, version: str) -> bool:
    return automation_reads.record_observation(
        m.runtime.db, m.model_id, m.ids["src"], version, time.time()
    )


def test_two_threads_ticking_one_slot_evaluate_it_once(runtime: Runtime, pool: WorkerPool) -> None:
    m = _source_model(runtime)
    loops = [m.loop(tick_seconds=1000.0), m.loop(tick_seconds=1000.0)]
    for round_ in range(10):
        assert _observe(m, f"v{round_}")
        at = 1000.0 * (round_ + 1) + 1  # both in the same slot, one slot per round
        results: list[Any] = []
        go = threading.Barrier(2)

        def tick(index: int, at: float = at, go: Any = go, results: Any = results) -> None:
            go.wait()
            results.extend(loops[index].run_once(at))

        threads = [threading.Thread(target=tick, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 1, results
        m.settled()
    with runtime.db.read() as conn:
        requested = conn.execute(select(automation_requests.c.tick_id)).scalars().all()
    assert len(requested) == len(set(requested)) == 10


def _loop_in_process(url: str, stop: Any, ready: Any) -> None:
    from dataclasses import replace

    from app.runner.automation_loop import AutomationLoop
    from app.services.runs import RunService
    from app.store.database import Database
    from jobs import REGISTRY
    from tests.conftest import TEST_SETTINGS

    settings = replace(TEST_SETTINGS, database_url=url, automation_tick_seconds=0.05)
    db = Database(url)
    loop = AutomationLoop(RunService(db, REGISTRY, settings)).start()
    ready.set()
    stop.wait(120)  # until the parent has made its changes
    loop.stop()
    db.dispose()


def test_two_processes_running_the_loop_launch_nothing_twice(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = _source_model(runtime)
    _observe(m, "initial")  # so clean's first refresh (it is missing) reads a version
    ctx = multiprocessing.get_context("spawn")
    ready, stop = [ctx.Event(), ctx.Event()], ctx.Event()
    procs = [
        ctx.Process(target=_loop_in_process, args=(runtime.db.url, stop, ready[i]))
        for i in range(2)
    ]
    for proc in procs:
        proc.start()
    for event in ready:
        assert event.wait(60)
    fresh = lambda: m.view()["clean"]["status"] == "FRESH"  # noqa: E731
    wait_until(fresh, 20, what="clean's first refresh")
    for version in range(8):
        _observe(m, f"v{version}")
        wait_until(lambda: m.view()["clean"]["status"] == "FRESH", 20, what="clean to refresh")
    stop.set()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    m.settled()
    with runtime.db.read() as conn:
        spans = conn.execute(
            select(jobs.c.created_at, jobs.c.finished_at)
            .join(run_assets, run_assets.c.job_id == jobs.c.id)
            .where(run_assets.c.asset == "clean")
            .order_by(jobs.c.created_at)
        ).all()
        owners = set(conn.execute(select(automation_ticks.c.owner)).scalars())
    # The first refresh, then each new version's once; none began before the previous ended.
    assert len(spans) == 9, spans
    for earlier, later in itertools.pairwise(spans):
        assert later.created_at >= earlier.finished_at, spans
    assert len(owners) >= 1


def test_a_process_dying_mid_tick_leaves_nothing_and_the_next_tick_does_it_once(
    runtime: Runtime, tmp_path: Path
) -> None:
    m = _source_model(runtime)
    _observe(m, "v1")
    script = (
        "import sys\n"
        "from dataclasses import replace\n"
        "from app.runner.automation_loop import AutomationLoop\n"
        "from app.services.runs import RunService\n"
        "from app.store.database import Database\n"
        "from jobs import REGISTRY\n"
        "from tests.conftest import TEST_SETTINGS\n"
        "s = replace(TEST_SETTINGS, database_url=sys.argv[1], automation_tick_seconds=0.001)\n"
        "AutomationLoop(RunService(Database(sys.argv[1]), REGISTRY, s)).run_once()\n"
    )
    env = {**os.environ, "JOBCHAIN_FAILPOINTS": "automation.tick.before_commit"}
    done = subprocess.run(
        [sys.executable, "-c", script, runtime.db.url], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == EXIT_CODE, done.stderr.decode()
    with runtime.db.read() as conn:
        assert conn.execute(select(automation_ticks.c.id)).first() is None
        assert conn.execute(select(runs.c.id)).first() is None
        assert conn.execute(select(automation_requests.c.id)).first() is None
    assert [r.requested for r in m.loop().run_once()] == [["clean"]]
    assert m.requested() == ["clean"]


def _busy_loop(url: str, ready: Any) -> None:
    """Tick as fast as the loop allows (every 10 ms) until killed."""
    from dataclasses import replace

    from app.runner.automation_loop import AutomationLoop
    from app.services.runs import RunService
    from app.store.database import Database
    from jobs import REGISTRY
    from tests.conftest import TEST_SETTINGS

    settings = replace(TEST_SETTINGS, database_url=url, automation_tick_seconds=0.01)
    loop = AutomationLoop(RunService(Database(url), REGISTRY, settings))
    ready.set()
    while True:
        loop.run_once()


def test_kill_9_at_random_moments_leaves_every_tick_whole(
    runtime: Runtime, pool: WorkerPool
) -> None:
    m = Model.create(runtime)
    m.asset("src", kind="source")
    previous = "src"
    for i in range(60):  # a long eager chain: each tick has real work to do
        m.asset(f"a{i}", previous, automation="reconcile")
        previous = f"a{i}"
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    for round_ in range(6):
        _observe(m, f"v{round_}")
        ready = ctx.Event()
        proc = ctx.Process(target=_busy_loop, args=(runtime.db.url, ready))
        proc.start()
        assert ready.wait(60)
        threading.Event().wait(rng.uniform(0.05, 0.6))  # the kill schedule, not a wait
        os.kill(proc.pid or 0, 9)
        proc.join(30)
        assert proc.exitcode == -9
    m.settled(timeout=60)
    with runtime.db.read() as conn:
        ticks = conn.execute(select(automation_ticks)).all()
        requests = conn.execute(select(automation_requests)).all()
        tick_runs = conn.execute(
            select(runs.c.id, runs.c.tick_id).where(runs.c.tick_id.is_not(None))
        ).all()
    by_tick = {t.id: t for t in ticks}
    for run in tick_runs:  # every automated run belongs to a committed tick that names it
        assert by_tick[run.tick_id].run_id == run.id
    for t in ticks:  # a tick's counts are its requests
        mine = [r for r in requests if r.tick_id == t.id]
        assert len(mine) == t.requested
        assert (t.run_id is None) == (t.requested == 0)
    assert len({(r.tick_id, r.asset_id) for r in requests}) == len(requests)
    # Nothing doubled: no automated refresh of an asset began before the previous ended.
    with runtime.db.read() as conn:
        rows = conn.execute(
            select(run_assets.c.asset, jobs.c.created_at, jobs.c.finished_at)
            .join(jobs, jobs.c.id == run_assets.c.job_id)
            .where(run_assets.c.own.is_(True))
            .order_by(run_assets.c.asset, jobs.c.created_at)
        ).all()
    for earlier, later in itertools.pairwise(rows):
        if earlier.asset == later.asset:
            assert later.created_at >= earlier.finished_at, (earlier, later)
