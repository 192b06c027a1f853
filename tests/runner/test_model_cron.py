"""The assets' cron: each fire time of a model starts exactly one run of the assets due
then, without downstream, however many schedule loops (processes) serve it."""

from __future__ import annotations

import threading

from sqlalchemy import select

from app.runner.schedule_loop import ScheduleLoop
from app.store import graph_changes, graphs, run_reads
from app.store.database import Database
from app.store.tables import model_fires
from config import Settings
from jobs import REGISTRY

EVERY_MINUTE = "* * * * *"


def test_two_schedulers_start_one_run_per_model_and_fire_time(
    db: Database, settings: Settings
) -> None:
    model_id = graphs.create_model(db, "cron", None)
    noop = {"targetObject": "NOOP"}
    assets = [
        {"name": "a", "job": noop, "cron": EVERY_MINUTE},
        {"name": "b", "job": noop, "cron": EVERY_MINUTE, "timezone": "Europe/Paris"},
        {"name": "c", "job": noop, "cron": "0 0 1 1 *"},
        {"name": "d", "job": noop},
    ]
    edges = [("a", "b"), ("b", "d"), ("a", "c")]
    graph_changes.replace_graph(db, model_id, assets, edges)
    other = Database(settings.database_url, pool_size=4)  # a second process's database
    clock = [1_800_000_030.0]  # 30 s past a minute
    loops = [
        ScheduleLoop(database, REGISTRY, settings, clock=lambda: clock[0])
        for database in (db, other)
    ]
    try:
        loops[0].run_once()  # computes the assets' next fire times; nothing due yet
        assert run_reads.list_runs(db, model_id) == []
        fire_times = []
        for minute in (1, 2):
            clock[0] = 1_800_000_000.0 + 60 * minute + 1
            fire_times.append(1_800_000_000.0 + 60 * minute)
            barrier = threading.Barrier(len(loops))

            def serve(loop: ScheduleLoop, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                loop.run_once()

            threads = [threading.Thread(target=serve, args=(loop,)) for loop in loops]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
    finally:
        other.dispose()
    runs = run_reads.list_runs(db, model_id)
    assert [r["fire_time"] for r in runs] == fire_times
    for run in runs:
        # a and b are due each minute (c yearly); no downstream: d is not refreshed.
        assert [a["asset"] for a in run["assets"]] == ["a", "b"]
        assert run["downstream"] is False
    with db.read() as conn:
        fires = conn.execute(select(model_fires.c.fire_time, model_fires.c.run_id)).all()
    assert sorted(fires) == [(t, r["id"]) for t, r in zip(fire_times, runs, strict=True)]
