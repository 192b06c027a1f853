"""Cron schedules on SQLite and PostgreSQL: the API over real HTTP, firing with a clock the
test controls (once per fire time, coalesced after downtime, guarded against racing
schedulers in other threads and processes), the serve loop, the CLI and the cron rules."""

from __future__ import annotations

import json
import multiprocessing
import queue
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from click.testing import CliRunner, Result
from sqlalchemy import select, update

import app.cli.root
from app.cli import cli
from app.cli.client import ApiClient
from app.domain.cron import InvalidSchedule, cron_schedule
from app.domain.statuses import Status
from app.runner.schedule_loop import ScheduleLoop, fire_due, next_fire_after
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import schedules, schema
from app.store.database import Database
from app.store.tables import jobs, schedule_fires
from app.store.tables import schedules as schedules_table
from config import Settings
from jobs import REGISTRY
from tests.helpers import AUTH, LiveServer, wait_for_chain, wait_until
from tests.store.test_races import JOIN_TIMEOUT, race

# The controlled clock starts half a minute past 12:00, so "* * * * *" next fires at 12:01.
T0 = datetime(2031, 3, 4, 12, 0, 30, tzinfo=UTC).timestamp()
MINUTE = 60.0
AT_1201 = T0 + 30
JOB: dict[str, Any] = {
    "targetObject": "155.NOOP",
    "parameters": {"price": 1.5},
    "nextJobs": [{"targetObject": "38.NOOP", "executeOnError": True}],
}


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "nightly", "cron": "* * * * *", "timezone": "UTC", "job": JOB} | fields


def add(db: Database, at: float = T0, cron: str = "* * * * *", **fields: Any) -> int:
    """A schedule created at clock time ``at`` (as the API would, but with our clock)."""
    values = {"name": f"s{len(schedules.list_schedules(db))}", "payload": JOB, "enabled": True}
    values |= fields
    return schedules.create(
        db,
        cron=cron,
        timezone="UTC",
        next_fire_at=next_fire_after(at)(cron, "UTC"),
        **values,
    )


def fire(db: Database, settings: Settings, at: float) -> list[schedules.Fire]:
    return fire_due(db, REGISTRY, settings, now=at)


def fires_of(db: Database, schedule_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        query = (
            select(schedule_fires)
            .where(schedule_fires.c.schedule_id == schedule_id)
            .order_by(schedule_fires.c.fire_time)
        )
        return [dict(r) for r in conn.execute(query).mappings()]


def root_ids(db: Database) -> list[int]:
    with db.read() as conn:
        query = select(jobs.c.id).where(jobs.c.parent_id.is_(None)).order_by(jobs.c.id)
        return list(conn.execute(query).scalars())


def next_fire_at(db: Database, schedule_id: int) -> float | None:
    schedule = schedules.get_schedule(db, schedule_id)
    assert schedule is not None
    return schedule["next_fire_at"]  # type: ignore[no-any-return]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Api:
    """The live server's /api/v1; every call carries the AUTH headers."""

    def __init__(self, url: str):
        self.base = f"{url}/api/v1"
        self.session = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = AUTH | kwargs.pop("headers", {})
        return self.session.request(
            method, f"{self.base}{path}", headers=headers, timeout=30, **kwargs
        )

    def created(self, **fields: Any) -> dict[str, Any]:
        response = self.call("POST", "/schedules", json=body(**fields))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def api(live: LiveServer) -> Iterator[Api]:
    client = Api(live.url)
    yield client
    client.session.close()


# -- the API ---------------------------------------------------------------------------------


def test_the_shipped_example_schedule_is_accepted(api: Api) -> None:
    example = Path(__file__).resolve().parents[2] / "examples/schedules/nightly-datamart.json"
    response = api.call("POST", "/schedules", json=json.loads(example.read_text()))
    assert response.status_code == 201, response.text
    assert response.json()["cron"] == "30 2 * * 1-5"
    assert len(response.json()["nextFireTimes"]) == 5


def test_create_get_list_patch_delete_over_http(api: Api) -> None:
    response = api.call("POST", "/schedules", json=body(timezone="Europe/Prague"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["Location"] == f"/api/v1/schedules/{created['id']}"
    assert created["name"] == "nightly"
    assert created["enabled"] is True
    assert created["job"] == JOB
    assert created["lastChains"] == []
    times = created["nextFireTimes"]
    assert len(times) == 5 and times == sorted(times) and times[0] == created["nextFireAt"]
    assert all(t.endswith(":00.000000Z") for t in times)  # whole minutes

    got = api.call("GET", f"/schedules/{created['id']}")
    assert got.status_code == 200
    assert got.json()["cron"] == "* * * * *"
    listed = api.call("GET", "/schedules").json()["items"]
    assert [s["id"] for s in listed] == [created["id"]]

    paused = api.call("PATCH", f"/schedules/{created['id']}", json={"enabled": False}).json()
    assert paused["enabled"] is False
    assert paused["nextFireAt"] is None and paused["nextFireTimes"] == []

    new_job = {"targetObject": "7.NOOP"}
    changed = api.call(
        "PATCH",
        f"/schedules/{created['id']}",
        json={"enabled": True, "cron": "0 9 * * 1-5", "job": new_job, "name": "weekdays"},
    ).json()
    assert (changed["name"], changed["cron"], changed["job"]) == (
        "weekdays",
        "0 9 * * 1-5",
        new_job,
    )
    prague = ZoneInfo("Europe/Prague")
    for stamp in changed["nextFireTimes"]:
        local = datetime.fromisoformat(stamp).astimezone(prague)
        assert (local.hour, local.minute) == (9, 0) and local.isoweekday() <= 5

    deleted = api.call("DELETE", f"/schedules/{created['id']}")
    assert deleted.status_code == 204
    assert api.call("GET", f"/schedules/{created['id']}").status_code == 404
    assert api.call("GET", "/schedules").json()["items"] == []


def test_get_shows_the_chains_fires_started(api: Api, runtime: Runtime, settings: Settings) -> None:
    created = api.created()
    due_at = next_fire_at(runtime.db, created["id"])
    assert due_at is not None
    [fired] = fire(runtime.db, settings, due_at)
    shown = api.call("GET", f"/schedules/{created['id']}").json()
    assert shown["lastChains"] == [
        {
            "fireTime": iso(due_at),
            "firedAt": iso(due_at),
            "rootJobId": fired.root_job_id,
            "status": Status.WAITING_FOR_DISPATCH,
            "message": None,
        }
    ]
    assert shown["nextFireAt"] == iso(due_at + MINUTE)
    root = api.call("GET", f"/jobs/{fired.root_job_id}/tree").json()
    assert root["targetObject"] == "155.NOOP"
    assert [j["targetObject"] for j in root["nextJobs"]] == ["38.NOOP"]


def test_last_chains_are_the_latest_five(db: Database, settings: Settings) -> None:
    schedule_id = add(db)
    for minute in range(7):
        fire(db, settings, AT_1201 + minute * MINUTE)
    shown = schedules.get_schedule(db, schedule_id)
    assert shown is not None
    assert [f["fire_time"] for f in shown["fires"]] == [
        AT_1201 + m * MINUTE for m in (6, 5, 4, 3, 2)
    ]
    [listed] = schedules.list_schedules(db)
    assert listed["fires"] == shown["fires"]


@pytest.mark.parametrize(
    ("fields", "paths"),
    [
        ({"cron": "* * * *"}, {"cron"}),
        ({"cron": "61 * * * *"}, {"cron"}),
        ({"cron": "0 0 30 2 *"}, {"cron"}),
        ({"cron": "* * * * 8"}, {"cron"}),
        ({"timezone": "Mars/Olympus"}, {"timezone"}),
        ({"timezone": "../../etc/passwd"}, {"timezone"}),
        ({"job": {"targetObject": "1.NOPE"}}, {"job.targetObject"}),
        (
            {"job": {"targetObject": "1.NOOP", "nextJobs": [{"targetObject": 5}, "x"]}},
            {"job.nextJobs[1]"},
        ),
        (
            {"job": {"targetObject": "1.NOOP", "nextJobs": [{"targetObject": 5}]}},
            {"job.nextJobs[0].targetObject"},
        ),
        ({"job": [1]}, {"job"}),
        ({"job": {"targetObject": "1.NOOP", "bogus": 1}}, {"job.bogus"}),
        (
            {"cron": "x", "timezone": "Nope", "job": {"targetObject": "1.NOPE"}},
            {"cron", "timezone", "job.targetObject"},
        ),
        ({"enabled": "true"}, {"enabled"}),
        ({"name": ""}, {"name"}),
        ({"extra": 1}, {"extra"}),
    ],
)
def test_invalid_schedule_is_400_naming_the_paths(
    api: Api, fields: dict[str, Any], paths: set[str]
) -> None:
    response = api.call("POST", "/schedules", json=body(**fields))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_schedule"
    assert set(error["details"]) == paths
    assert api.call("GET", "/schedules").json()["items"] == []


def test_missing_fields_and_bad_json_are_400(api: Api) -> None:
    response = api.call("POST", "/schedules", json={"cron": "* * * * *"})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"name", "job"}
    broken = api.call("POST", "/schedules", data=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400


def test_patch_is_validated_like_create(api: Api) -> None:
    created = api.created()
    path = f"/schedules/{created['id']}"
    for changes, bad in [
        ({"cron": "* *"}, "cron"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"job": {"targetObject": "1.NOPE"}}, "job.targetObject"),
        ({"enabled": None}, "enabled"),
        ({"id": 5}, "id"),
    ]:
        response = api.call("PATCH", path, json=changes)
        assert response.status_code == 400, changes
        assert bad in response.json()["error"]["details"]
    assert api.call("GET", path).json() == created  # nothing changed


def test_duplicate_name_is_409(api: Api) -> None:
    first = api.created(name="a")
    duplicate = api.call("POST", "/schedules", json=body(name="a"))
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "name_taken"
    second = api.created(name="b")
    renamed = api.call("PATCH", f"/schedules/{second['id']}", json={"name": "a"})
    assert renamed.status_code == 409
    assert [s["name"] for s in api.call("GET", "/schedules").json()["items"]] == ["a", "b"]
    assert first["id"] != second["id"]


def test_unknown_schedule_is_404(api: Api) -> None:
    for method, kwargs in [("GET", {}), ("PATCH", {"json": {"enabled": False}}), ("DELETE", {})]:
        for schedule_id in (12345, 99999999999999999999):
            response = api.call(method, f"/schedules/{schedule_id}", **kwargs)
            assert response.status_code == 404, (method, schedule_id)
            assert response.json()["error"]["code"] == "not_found"


def test_openapi_documents_the_schedules(api: Api) -> None:
    spec = api.call("GET", "/openapi.json").json()
    assert set(spec["paths"]["/api/v1/schedules"]) == {"get", "post"}
    assert set(spec["paths"]["/api/v1/schedules/{schedule_id}"]) == {"get", "patch", "delete"}
    assert "Schedule" in spec["components"]["schemas"]


# -- firing with a controlled clock ------------------------------------------------------------


def test_an_every_minute_schedule_fires_once_at_its_time_not_before(
    db: Database, settings: Settings
) -> None:
    schedule_id = add(db)
    assert next_fire_at(db, schedule_id) == AT_1201
    assert fire(db, settings, AT_1201 - 0.001) == []
    [fired] = fire(db, settings, AT_1201)
    assert (fired.schedule_id, fired.fire_time, fired.message) == (schedule_id, AT_1201, None)
    assert fire(db, settings, AT_1201) == []
    assert fire(db, settings, AT_1201 + 59) == []
    assert next_fire_at(db, schedule_id) == AT_1201 + MINUTE
    assert root_ids(db) == [fired.root_job_id]
    [record] = fires_of(db, schedule_id)
    assert (record["fire_time"], record["root_job_id"]) == (AT_1201, fired.root_job_id)


def test_fired_chain_is_the_payload_and_workers_run_it(
    db: Database, settings: Settings, pool: WorkerPool
) -> None:
    add(db)
    [fired] = fire(db, settings, AT_1201)
    assert fired.root_job_id is not None
    tree = wait_for_chain(db, fired.root_job_id)
    assert tree["target_object"] == "155.NOOP" and tree["parameters"] == {"price": 1.5}
    assert [c["target_object"] for c in tree["next_jobs"]] == ["38.NOOP"]
    assert {tree["status"], tree["next_jobs"][0]["status"]} == {Status.FINISHED}


def test_downtime_coalesces_missed_fires_into_one_chain(db: Database, settings: Settings) -> None:
    schedule_id = add(db)
    back_at = T0 + 10 * MINUTE  # 12:10:30: fire times 12:01 ... 12:10 were missed
    fired = fire(db, settings, back_at)
    assert [f.fire_time for f in fired] == [AT_1201]
    assert len(root_ids(db)) == 1
    assert next_fire_at(db, schedule_id) == AT_1201 + 10 * MINUTE  # 12:11, after now
    assert fire(db, settings, back_at + 1) == []


def test_paused_schedules_do_not_fire(db: Database, settings: Settings) -> None:
    created_paused = add(db, enabled=False)
    paused_later = add(db)
    assert schedules.update_schedule(db, paused_later, {"enabled": False}, next_fire_after(T0))
    assert fire(db, settings, T0 + 60 * MINUTE) == []
    assert fires_of(db, created_paused) == fires_of(db, paused_later) == []
    assert root_ids(db) == []


def test_resume_computes_the_next_fire_time_from_now(db: Database, settings: Settings) -> None:
    schedule_id = add(db)
    schedules.update_schedule(db, schedule_id, {"enabled": False}, next_fire_after(T0))
    resumed_at = T0 + 10 * MINUTE  # 12:10:30
    schedules.update_schedule(db, schedule_id, {"enabled": True}, next_fire_after(resumed_at))
    assert next_fire_at(db, schedule_id) == AT_1201 + 10 * MINUTE  # 12:11, nothing made up
    assert fire(db, settings, resumed_at) == []
    [fired] = fire(db, settings, AT_1201 + 10 * MINUTE)
    assert fired.fire_time == AT_1201 + 10 * MINUTE


def test_other_changes_keep_the_next_fire_time(db: Database, settings: Settings) -> None:
    schedule_id = add(db)
    later = next_fire_after(T0 + 30 * MINUTE)
    schedules.update_schedule(db, schedule_id, {"payload": {"targetObject": "9.NOOP"}}, later)
    schedules.update_schedule(db, schedule_id, {"enabled": True}, later)  # already enabled
    assert next_fire_at(db, schedule_id) == AT_1201
    schedules.update_schedule(db, schedule_id, {"cron": "*/5 * * * *"}, later)
    assert next_fire_at(db, schedule_id) == T0 + 30 * MINUTE + 4.5 * MINUTE  # 12:35
    [fired] = fire(db, settings, T0 + 40 * MINUTE)
    assert fired.root_job_id is not None
    with db.read() as conn:
        target = conn.execute(select(jobs.c.target_object).where(jobs.c.id == fired.root_job_id))
        assert target.scalar_one() == "9.NOOP"


def test_a_payload_that_no_longer_validates_uses_up_its_fire(
    db: Database, settings: Settings
) -> None:
    """E.g. the service restarted without the module of a job type: no chain, a reason,
    and the schedule goes on (no error at every check)."""
    schedule_id = add(db, payload={"targetObject": "1.GONE"})
    [fired] = fire(db, settings, AT_1201)
    assert fired.root_job_id is None
    assert fired.message is not None and "unknown job type 'GONE'" in fired.message
    assert "targetObject" in fired.message
    assert root_ids(db) == []
    assert next_fire_at(db, schedule_id) == AT_1201 + MINUTE
    [record] = fires_of(db, schedule_id)
    assert record["message"] == fired.message


def test_a_fire_time_served_before_is_not_served_again(db: Database, settings: Settings) -> None:
    """The unique (schedule, fire time) row: a clock set back may bring a fire time round
    again; it starts no second chain, and the schedule moves on."""
    schedule_id = add(db)
    fire(db, settings, AT_1201)
    db.write(
        lambda conn: conn.execute(
            update(schedules_table)
            .where(schedules_table.c.id == schedule_id)
            .values(next_fire_at=AT_1201)
        )
    )
    assert fire(db, settings, AT_1201 + 5) == []
    assert len(fires_of(db, schedule_id)) == len(root_ids(db)) == 1
    assert next_fire_at(db, schedule_id) == AT_1201 + MINUTE


def test_a_stale_fire_time_does_nothing(db: Database, settings: Settings) -> None:
    schedule_id = add(db)
    build: Any = lambda payload: pytest.fail("must not build")  # noqa: E731
    stale = schedules.fire(db, schedule_id, AT_1201 - MINUTE, AT_1201, next_fire_after(T0), build)
    assert stale is None
    assert schedules.fire(db, 12345, AT_1201, AT_1201, next_fire_after(T0), build) is None
    assert fires_of(db, schedule_id) == []


def test_two_schedulers_racing_fire_each_time_once(db: Database, settings: Settings) -> None:
    """Two schedulers with their own Database objects (as on two machines) fire the same
    due time at the same moment, 20 times over: one chain per fire time."""
    other = Database(settings.database_url, pool_size=4)
    try:
        schedule_id = add(db)
        for round_ in range(20):
            at = AT_1201 + round_ * MINUTE
            results = race(
                partial(fire, db, settings, at), partial(fire, other, settings, at), rotate=round_
            )
            assert not [r for r in results if isinstance(r, Exception)], results
            assert sorted(len(r) for r in results) == [0, 1], f"round {round_}: {results}"
    finally:
        other.dispose()
    fired = fires_of(db, schedule_id)
    assert [f["fire_time"] for f in fired] == [AT_1201 + m * MINUTE for m in range(20)]
    assert sorted(f["root_job_id"] for f in fired) == root_ids(db)


def _fire_in_process(url: str, rounds: int, barrier: Any, results: Any) -> None:
    """Child process: a scheduler of its own, racing the others at every fire time."""
    db = Database(url, pool_size=2)
    settings = Settings(database_url=url)
    try:
        fired = []
        for round_ in range(rounds):
            barrier.wait(JOIN_TIMEOUT)
            fired += [
                f.fire_time for f in fire_due(db, REGISTRY, settings, AT_1201 + round_ * MINUTE)
            ]
        results.put(fired)
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        db.dispose()


def test_scheduler_processes_sharing_a_database_fire_each_time_once(db: Database) -> None:
    schedule_id = add(db)
    rounds, processes_n = 10, 3
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes_n)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_fire_in_process, args=(db.url, rounds, barrier, results))
        for _ in range(processes_n)
    ]
    for process in processes:
        process.start()
    try:
        collected = [results.get(timeout=JOIN_TIMEOUT) for _ in processes]
    except queue.Empty:
        pytest.fail("a scheduler process did not report")
    finally:
        for process in processes:
            process.join(JOIN_TIMEOUT)
            if process.is_alive():
                process.kill()
    assert all(isinstance(fired, list) for fired in collected), collected
    fire_times = sorted(t for fired in collected for t in fired)
    assert fire_times == [AT_1201 + m * MINUTE for m in range(rounds)]
    assert len(fires_of(db, schedule_id)) == len(root_ids(db)) == rounds


def test_schedules_survive_a_restart_and_overdue_ones_fire_once(
    db: Database, settings: Settings
) -> None:
    schedule_id = add(db, name="survivor")
    db.dispose()  # "the service stops"
    restarted = Database(settings.database_url, pool_size=4)
    try:
        schema.upgrade(restarted)
        [found] = schedules.list_schedules(restarted)
        assert (found["id"], found["name"], found["payload"]) == (schedule_id, "survivor", JOB)
        back_at = T0 + 3 * 60 * MINUTE  # three hours later
        assert len(fire(restarted, settings, back_at)) == 1
        assert fire(restarted, settings, back_at) == []
        assert len(root_ids(restarted)) == 1
    finally:
        restarted.dispose()


def test_delete_keeps_the_chains_and_drops_the_fire_records(
    db: Database, settings: Settings
) -> None:
    schedule_id = add(db)
    [fired] = fire(db, settings, AT_1201)
    assert schedules.delete_schedule(db, schedule_id)
    assert not schedules.delete_schedule(db, schedule_id)
    assert fires_of(db, schedule_id) == []
    assert root_ids(db) == [fired.root_job_id]
    assert fire(db, settings, T0 + 60 * MINUTE) == []


# -- the loop of `jobchain serve` --------------------------------------------------------------


class Clock:
    def __init__(self, t: float):
        self.t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def set(self, t: float) -> None:
        with self._lock:
            self.t = t


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def loop_factory(runtime: Runtime, clock: Clock) -> Iterator[Callable[..., ScheduleLoop]]:
    loops: list[ScheduleLoop] = []

    def start(
        check_seconds: float = 60.0, clock_fn: Callable[[], float] | None = None
    ) -> ScheduleLoop:
        loop = ScheduleLoop(
            runtime.db, REGISTRY, runtime.settings, clock_fn or clock, check_seconds
        )
        loops.append(loop.start())
        return loop

    yield start
    for loop in loops:
        loop.stop()


def test_loop_fires_when_the_clock_reaches_the_fire_time(
    db: Database, clock: Clock, loop_factory: Callable[..., ScheduleLoop]
) -> None:
    schedule_id = add(db)
    loop = loop_factory()
    assert loop.run_once() == pytest.approx(30.0)  # sleeps until 12:01, the earliest fire
    assert fires_of(db, schedule_id) == []
    clock.set(AT_1201)
    loop.wake()
    wait_until(lambda: fires_of(db, schedule_id), timeout=10, what="the loop to fire")
    assert loop.run_once() == pytest.approx(MINUTE)
    assert len(fires_of(db, schedule_id)) == len(root_ids(db)) == 1


def test_loop_fires_overdue_schedules_once_at_start(
    db: Database, clock: Clock, loop_factory: Callable[..., ScheduleLoop]
) -> None:
    schedule_id = add(db)
    clock.set(T0 + 30 * MINUTE)  # the service was down half an hour
    loop = loop_factory()
    wait_until(lambda: fires_of(db, schedule_id), timeout=10, what="the overdue fire")
    loop.run_once()
    assert len(fires_of(db, schedule_id)) == len(root_ids(db)) == 1


def test_loop_wakes_at_once_when_a_schedule_is_created_through_the_api(
    api: Api, runtime: Runtime, clock: Clock, loop_factory: Callable[..., ScheduleLoop]
) -> None:
    """The loop would next look in 60 s on its own; creating a schedule wakes it."""
    clock.set(datetime.now(UTC).timestamp() + 5 * MINUTE)  # the new schedule is due at once
    loop_factory(check_seconds=60.0)
    created = api.created()
    wait_until(lambda: fires_of(runtime.db, created["id"]), timeout=10, what="the wake-up")
    shown = api.call("GET", f"/schedules/{created['id']}").json()
    assert len(shown["lastChains"]) == 1 and shown["lastChains"][0]["rootJobId"] is not None


def test_loop_keeps_going_after_a_failed_check(
    db: Database, clock: Clock, loop_factory: Callable[..., ScheduleLoop]
) -> None:
    calls = {"n": 0}

    def flaky_clock() -> float:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("clock hiccup")
        return clock()

    schedule_id = add(db)
    clock.set(AT_1201)
    loop_factory(check_seconds=0.05, clock_fn=flaky_clock)  # its first check fails
    wait_until(lambda: fires_of(db, schedule_id), timeout=10, what="a later check to fire")


# -- the CLI -----------------------------------------------------------------------------------

Run = Callable[..., Result]


class AuthClient(ApiClient):
    """The CLI's client with the test token on every call."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.session.headers.update(AUTH)


@pytest.fixture
def jobchain(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setattr(app.cli.root, "ApiClient", AuthClient)

    def run(*args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["--url", live.url, *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def test_cli_add_list_show_pause_resume_delete(
    jobchain: Run, tmp_path: Path, runtime: Runtime, settings: Settings
) -> None:
    spec = tmp_path / "nightly.json"
    spec.write_text(json.dumps(body(name="nightly", cron="0 2 * * *", timezone="Europe/Prague")))
    added = jobchain("schedules", "add", str(spec))
    assert added.exit_code == 0, added.output
    match = re.search(r"added\s+(\d+)\s+nightly\s+enabled", added.output)
    assert match, added.output
    schedule_id = int(match.group(1))

    listed = jobchain("schedules", "list")
    assert listed.exit_code == 0
    assert "nightly" in listed.output and "0 2 * * * (Europe/Prague)" in listed.output
    # Times in the schedule's zone, to the second, with the zone: 02:00 in Prague.
    assert re.search(r"  next \d{4}-\d\d-\d\d 02:00:00 CES?T  last -$", listed.output, re.M)

    paused = jobchain("schedules", "pause", "nightly")
    assert paused.exit_code == 0 and "paused" in paused.output and "next -" in paused.output
    assert jobchain("schedules", "list").output.count("paused") == 1

    resumed = jobchain("schedules", "resume", str(schedule_id))
    assert resumed.exit_code == 0 and "enabled" in resumed.output

    due_at = next_fire_at(runtime.db, schedule_id)
    assert due_at is not None
    [fired] = fire(runtime.db, settings, due_at)
    shown = jobchain("schedules", "show", "nightly")
    assert shown.exit_code == 0
    assert len(re.findall(r"^  next  \d{4}-\d\d-\d\d 02:00:00 CES?T$", shown.output, re.M)) == 5
    assert re.search(r"^  fired \d{4}-\d\d-\d\d 02:00:00 CES?T  job", shown.output, re.M)
    assert f"job {fired.root_job_id} WAITING_FOR_DISPATCH" in shown.output
    as_json = json.loads(jobchain("schedules", "show", str(schedule_id), "--json").output)
    assert as_json["lastChains"][0]["rootJobId"] == fired.root_job_id

    deleted = jobchain("schedules", "delete", "nightly")
    assert deleted.exit_code == 0 and f"deleted schedule {schedule_id}" in deleted.output
    assert jobchain("schedules", "list").output == ""


def test_cli_add_paused_from_stdin(jobchain: Run) -> None:
    added = jobchain("schedules", "add", "-", "--paused", input=json.dumps(body(name="later")))
    assert added.exit_code == 0, added.output
    assert "later" in added.output and "paused" in added.output


def test_cli_reports_errors_with_paths(jobchain: Run, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(body(cron="nope", job={"targetObject": "1.NOPE"})))
    rejected = jobchain("schedules", "add", str(spec))
    assert rejected.exit_code == 1
    assert "HTTP 400" in rejected.output
    assert "cron:" in rejected.output and "job.targetObject: unknown job type" in rejected.output

    spec.write_text("{not json")
    assert "not valid JSON" in jobchain("schedules", "add", str(spec)).output
    missing = jobchain("schedules", "pause", "no-such-schedule")
    assert missing.exit_code == 1 and "no schedule named 'no-such-schedule'" in missing.output
    unknown = jobchain("schedules", "delete", "4242")
    assert unknown.exit_code == 1 and "HTTP 404" in unknown.output


# -- what a cron expression means --------------------------------------------------------------


def fire_times(cron: str, timezone: str, start: datetime, count: int = 4) -> list[str]:
    schedule = cron_schedule(cron, timezone)
    zone = ZoneInfo(timezone)
    t, out = start.timestamp(), []
    for _ in range(count):
        following = schedule.next_after(t)
        assert following is not None
        out.append(datetime.fromtimestamp(following, zone).isoformat())
        t = following
    return out


FRIDAY = datetime(2025, 6, 13, 10, 0, tzinfo=UTC)


def test_day_of_week_numbers_are_crontabs() -> None:
    """0 and 7 are Sunday, 1-5 Monday to Friday (APScheduler 3 alone counts from Monday)."""
    assert fire_times("0 9 * * 1-5", "UTC", FRIDAY, 3) == [
        "2025-06-16T09:00:00+00:00",  # Monday
        "2025-06-17T09:00:00+00:00",
        "2025-06-18T09:00:00+00:00",
    ]
    sundays = ["2025-06-15T00:00:00+00:00", "2025-06-22T00:00:00+00:00"]
    assert fire_times("0 0 * * 0", "UTC", FRIDAY, 2) == sundays
    assert fire_times("0 0 * * 7", "UTC", FRIDAY, 2) == sundays
    assert fire_times("0 0 * * SUN", "UTC", FRIDAY, 2) == sundays
    assert fire_times("0 0 * * */2", "UTC", FRIDAY, 3) == [  # Sun, Tue, Thu, Sat
        "2025-06-14T00:00:00+00:00",
        "2025-06-15T00:00:00+00:00",
        "2025-06-17T00:00:00+00:00",
    ]


def test_restricted_day_of_month_and_day_of_week_either_matches() -> None:
    assert fire_times("0 0 1 * 1", "UTC", FRIDAY, 3) == [
        "2025-06-16T00:00:00+00:00",  # a Monday
        "2025-06-23T00:00:00+00:00",
        "2025-06-30T00:00:00+00:00",
    ] and fire_times("0 0 1 * 1", "UTC", datetime(2025, 6, 30, 1, tzinfo=UTC), 1) == [
        "2025-07-01T00:00:00+00:00"  # the 1st, a Tuesday
    ]


def test_fire_times_across_dst_changes_are_not_skipped() -> None:
    prague = ZoneInfo("Europe/Prague")
    before_spring = datetime(2025, 3, 29, 3, 0, tzinfo=prague)
    assert fire_times("0 0 1 * *", "Europe/Prague", before_spring, 1) == [
        "2025-04-01T00:00:00+02:00"  # APScheduler 3.11 alone says May 1st
    ]
    assert fire_times("0 0 * * 1", "Europe/Prague", before_spring, 1) == [
        "2025-03-31T00:00:00+02:00"
    ]
    assert fire_times("30 2 * * *", "Europe/Prague", before_spring, 2) == [
        "2025-03-30T03:30:00+02:00",  # 02:30 does not exist that night: shifted, not lost
        "2025-03-31T02:30:00+02:00",
    ]
    before_autumn = datetime(2025, 10, 25, 3, 0, tzinfo=prague)
    assert fire_times("30 2 * * *", "Europe/Prague", before_autumn, 2) == [
        "2025-10-26T02:30:00+02:00",  # the repeated 02:30 fires once
        "2025-10-27T02:30:00+01:00",
    ]


def test_upcoming_lists_an_overdue_fire_then_the_times_after_now() -> None:
    schedule = cron_schedule("* * * * *", "UTC")
    overdue = AT_1201
    upcoming = schedule.upcoming(overdue, T0 + 10 * MINUTE, 3)
    assert upcoming == [overdue, AT_1201 + 10 * MINUTE, AT_1201 + 11 * MINUTE]
    assert schedule.upcoming(None, T0, 5) == []


@pytest.mark.parametrize(
    ("cron", "timezone", "field"),
    [
        ("* * * * * *", "UTC", "cron"),
        ("* * * * 5-1", "UTC", "cron"),
        ("* * * * */0", "UTC", "cron"),
        ("0 0 31 4 *", "UTC", "cron"),
        ("* * * * *", "", "timezone"),
        ("* * * * *", "utc", "timezone"),
        ("* * * * *", "America", "timezone"),
    ],
)
def test_invalid_timing_names_the_field(cron: str, timezone: str, field: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        cron_schedule(cron, timezone)
    assert list(caught.value.details) == [field]
