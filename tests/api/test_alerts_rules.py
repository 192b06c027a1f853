"""Alert rules on SQLite and PostgreSQL: the API (admin only, the usual error shape), the
`jobchain alerts` commands, and which events each kind and filter picks out of the event
log (failed jobs, failed chains, failed joins, lease expiries, schedule fires that could
not start) and from automation's asset events (late, recovered, held, released)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import insert, select

from app.alerts.matcher import Matcher
from app.cli import cli
from app.domain.statuses import Status, Transition
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.services.submit import SubmitService
from app.store import asset_versions, graph_changes, graphs, notifications, tokens
from app.store.database import Database, now
from app.store.notification_tables import notification_deliveries
from app.store.tables import schedule_fires, schedules
from app.store.transitions import record_event_rows
from tests.helpers import ADMIN_TOKEN, AUTH, LiveServer, wait_for_chain

RULE = {
    "name": "ops",
    "events": ["job_failed", "chain_failed"],
    "channel": "webhook",
    "target": "https://hooks.example.com/jobchain",
}


def api(live: LiveServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.request(method, f"{live.url}/api/v1{path}", timeout=10, **kwargs)


def test_rules_crud_through_the_api(live: LiveServer) -> None:
    created = api(live, "POST", "/notification-rules", json={**RULE, "jobType": "FAIL"})
    assert created.status_code == 201, created.text
    rule = created.json()
    assets = {**RULE, "name": "assets", "events": ["asset_late", "asset_held"], "model": "sales"}
    by_model = api(live, "POST", "/notification-rules", json=assets).json()
    assert (by_model["model"], by_model["events"]) == ("sales", ["asset_late", "asset_held"])
    assert api(live, "DELETE", f"/notification-rules/{by_model['id']}").status_code == 204
    assert created.headers["Location"] == f"/api/v1/notification-rules/{rule['id']}"
    assert rule["jobType"] == "FAIL" and rule["enabled"] is True
    assert api(live, "GET", "/notification-rules").json()["items"] == [rule]
    changed = api(live, "PATCH", f"/notification-rules/{rule['id']}", json={"enabled": False})
    assert changed.json()["enabled"] is False
    assert api(live, "GET", f"/notification-rules/{rule['id']}/deliveries").json() == {"items": []}
    assert api(live, "DELETE", f"/notification-rules/{rule['id']}").status_code == 204
    gone = api(live, "GET", f"/notification-rules/{rule['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_bad_rules_are_refused_with_every_problem(live: LiveServer) -> None:
    bad = {**RULE, "events": ["job_failed", "nope"], "channel": "email", "target": "not mail"}
    answer = api(live, "POST", "/notification-rules", json={**bad, "extra": 1})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_rule"
    assert set(error["details"]) == {"events", "target", "extra"}
    webhook = api(live, "POST", "/notification-rules", json={**RULE, "target": "ftp://x"})
    assert webhook.json()["error"]["details"] == {"target": ["must be an http:// or https:// URL"]}
    assert api(live, "POST", "/notification-rules", json=RULE).status_code == 201
    taken = api(live, "POST", "/notification-rules", json=RULE)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"


def test_only_admins_see_or_change_rules(live: LiveServer, runtime: Runtime) -> None:
    _, reader = tokens.create(runtime.db, "reader", "a reader")
    headers = {"Authorization": f"Bearer {reader}"}
    for method in ("GET", "POST"):
        answer = api(live, method, "/notification-rules", headers=headers, json=RULE)
        assert answer.status_code == 403, method
        assert answer.json()["error"]["details"] == {} or "admin" in answer.text


def test_the_alerts_commands(live: LiveServer) -> None:
    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--url", live.url, "--token", ADMIN_TOKEN, *args])
        assert result.exit_code == 0, result.output
        return result.output

    added = run(
        "alerts",
        "add",
        "pager",
        "--on",
        "job_failed",
        "--on",
        "lease_expired",
        "--webhook",
        "http://127.0.0.1:9/hook",
        "--job-type",
        "FAIL",
        "--model",
        "sales",
    )
    assert (
        "pager" in added
        and "job_failed,lease_expired" in added
        and "type=FAIL model=sales" in added
    )
    run("alerts", "add", "mail", "--on", "chain_failed", "--email", "ops@example.com")
    listed = run("alerts", "list")
    assert "pager" in listed and "mail" in listed
    assert "disabled" in run("alerts", "disable", "pager")
    assert "enabled" in run("alerts", "enable", "pager")
    assert "pager" in run("alerts", "show", "pager")
    assert "deleted" in run("alerts", "delete", "mail")
    assert "mail" not in run("alerts", "list")
    both = CliRunner().invoke(
        cli,
        ["--url", live.url, "--token", ADMIN_TOKEN, "alerts", "add", "x", "--on", "job_failed"],
    )
    assert both.exit_code != 0 and "exactly one of --webhook and --email" in both.output


# -- which events each kind and filter picks ------------------------------------------------


def make_rule(db: Database, name: str, *events: str, **filters: Any) -> int:
    return notifications.create_rule(
        db,
        {
            "name": name,
            "events": list(events),
            "channel": "webhook",
            "target": "http://127.0.0.1:9/",
            **filters,
        },
    )


def owed(db: Database) -> list[tuple[int, str, dict[str, Any]]]:
    with db.read() as conn:
        rows = conn.execute(select(notification_deliveries).order_by(notification_deliveries.c.id))
        return [(r.rule_id, r.event_kind, r.payload) for r in rows]


@pytest.fixture
def matcher(db: Database) -> Matcher:
    found = Matcher(db)
    found.match()
    return found


def test_kinds_and_filters(runtime: Runtime, pool: WorkerPool, matcher: Matcher) -> None:
    db = runtime.db
    every = make_rule(db, "every", "job_failed", "chain_failed", "join_failed")
    typed = make_rule(db, "typed", "job_failed", job_type="FAIL", target_object="7*")
    other = make_rule(db, "other", "job_failed", job_type="NOOP")
    submit = SubmitService.for_runtime(runtime).submit
    # A branch fails, so the join (all_success by default) fails; the chain ends failed.
    root = submit(
        {
            "targetObject": "1.NOOP",
            "nextJobs": [
                {"targetObject": "70.FAIL", "nextJobs": [{"targetObject": "k.JOIN"}]},
                {"targetObject": "2.NOOP", "nextJobs": [{"targetObject": "k.JOIN"}]},
            ],
        },
        "admin",
    ).root_id
    wait_for_chain(db, root)
    matcher.match()
    matcher.match()  # nothing twice
    found = owed(db)
    kinds = sorted((rule, kind) for rule, kind, _ in found)
    # "every": the FAIL job, the chain, the join once (not each of its JOIN nodes);
    # "typed" wants FAIL jobs on 7*: the FAIL job; "other" (NOOP jobs) nothing.
    assert kinds == sorted(
        [
            (every, "job_failed"),
            (every, "chain_failed"),
            (every, "join_failed"),
            (typed, "job_failed"),
        ]
    )
    assert other not in {rule for rule, _, _ in found}
    join = next(p for _, kind, p in found if kind == "join_failed")
    assert join["joinKey"] == "k"


def test_lease_expiries_and_refused_fires(runtime: Runtime, matcher: Matcher) -> None:
    db = runtime.db
    lease = make_rule(db, "lease", "lease_expired")
    fires = make_rule(db, "fires", "schedule_fire_failed", schedule="nightly")
    make_rule(db, "elsewhere", "schedule_fire_failed", schedule="weekly")
    job = SubmitService.for_runtime(runtime).submit({"targetObject": "5.NOOP"}, "admin").root_id
    t = now()

    def write(conn: Any) -> None:
        # What the reaper writes when a worker vanished: the event rows say it all.
        for reason in (Transition.RERUN, Transition.INTERRUPT):
            record_event_rows(conn, [(job, 1)], Status.PROCESSING, Status.FAILED, t, reason)
        schedule = conn.execute(
            insert(schedules)
            .values(
                name="nightly",
                cron="0 2 * * *",
                timezone="UTC",
                payload={},
                enabled=True,
                next_fire_at=t + 60,
                created_at=t,
                updated_at=t,
            )
            .returning(schedules.c.id)
        ).scalar_one()
        conn.execute(
            insert(schedule_fires).values(
                schedule_id=schedule,
                fire_time=t,
                fired_at=t,
                root_job_id=None,
                message="invalid payload: unknown job type 'GONE'",
            )
        )

    db.write(write)
    matcher.match()
    found = owed(db)
    assert [(rule, kind) for rule, kind, _ in found if rule == lease] == [
        (lease, "lease_expired"),
        (lease, "lease_expired"),
    ]
    [(_, kind, fire)] = [f for f in found if f[0] == fires]
    assert kind == "schedule_fire_failed"
    assert fire["schedule"] == "nightly" and "GONE" in fire["message"]


def test_settled_deliveries_are_purged_after_retention(db: Database) -> None:
    rule_id = make_rule(db, "r", "job_failed")
    owed_rows = [
        {"rule_id": rule_id, "event_key": f"job_event:{i}", "event_kind": "job_failed",
         "payload": {}}
        for i in range(3)
    ]  # fmt: skip
    db.write(lambda conn: notifications.add_deliveries(conn, owed_rows, 100.0))
    [first, *_] = notifications.claim_due(db, 3, 60.0)
    assert notifications.record_attempt(db, first, None, None)  # delivered
    assert notifications.purge_settled(db, older_than=50.0) == 0  # not old enough
    assert notifications.purge_settled(db, older_than=now()) == 1  # pending ones stay
    assert sorted(s for s in notifications.delivery_counts(db)) == ["pending"]


def test_a_backlog_is_matched_a_batch_at_a_time_missing_nothing(runtime: Runtime) -> None:
    db = runtime.db
    make_rule(db, "all", "job_failed")
    matcher = Matcher(db, batch=7)
    matcher.match()  # cursors placed
    root = SubmitService.for_runtime(runtime).submit({"targetObject": "1.NOOP"}, "admin").root_id
    t = now()
    db.write(
        lambda conn: record_event_rows(
            conn, [(root, i) for i in range(1, 51)], Status.PROCESSING, Status.FAILED, t,
            Transition.FAIL,
        )
    )  # fmt: skip
    assert matcher.match() == 50
    assert matcher.match() == 0
    assert sorted(p["attempt"] for _, _, p in owed(db)) == list(range(1, 51))


def test_asset_events_and_the_model_filter(runtime: Runtime, matcher: Matcher) -> None:
    db = runtime.db
    models = {name: graphs.create_model(db, name, None) for name in ("sales", "stock")}
    daily = {"name": "daily", "job": {"targetObject": "x.NOOP"}}
    asset = {name: graph_changes.create_asset(db, m, daily) for name, m in models.items()}
    every = make_rule(db, "every", "asset_late", "asset_recovered", "asset_held", "asset_released")
    sales = make_rule(db, "sales", "asset_late", model="sales")
    jobs = make_rule(db, "jobs", "asset_late", job_type="NOOP")  # assets have no job type
    t = now()

    def events(conn: Any) -> None:
        for model, kind in [
            ("sales", "LATE"),
            ("sales", "RECOVERED"),
            ("sales", "NEW_DATA"),  # a source's new data: no alert
            ("stock", "LATE"),
            ("stock", "HELD"),
            ("stock", "RELEASED"),
        ]:
            asset_versions.add_event(conn, models[model], asset[model], kind, t, kind.lower())

    db.write(events)
    matcher.match()
    matcher.match()  # nothing twice
    found = owed(db)
    assert sorted((rule, kind, p["model"]) for rule, kind, p in found) == sorted(
        [
            (every, "asset_late", "sales"),
            (every, "asset_recovered", "sales"),
            (every, "asset_late", "stock"),
            (every, "asset_held", "stock"),
            (every, "asset_released", "stock"),
            (sales, "asset_late", "sales"),
        ]
    )
    assert jobs not in {rule for rule, _, _ in found}
