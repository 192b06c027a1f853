"""GET /metrics on SQLite and PostgreSQL: the Prometheus text format as prometheus_client
parses it, families counted from the event log while a real worker pool runs chains, the
database gauges (automation's by model too), and who may scrape (loopback only by default,
or a bearer token)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, update

from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.store import graph_changes, graphs
from app.store.automation_tables import automation_ticks
from app.store.database import now
from app.store.tables import assets
from app.web import create_app
from tests.helpers import AUTH, LiveServer, wait_for_chain, wait_until

CHAIN = {
    "targetObject": "1.NOOP",
    "nextJobs": [
        {"targetObject": "2.FAIL", "nextJobs": [{"targetObject": "3.NOOP"}]},
        {"targetObject": "4.SLEEP", "parameters": {"seconds": 0.05}},
    ],
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by (name, labels); parsing fails on a malformed body."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(server: LiveServer, **headers: str) -> requests.Response:
    return requests.get(f"{server.url}/metrics", headers=headers, timeout=10)


def test_metrics_count_what_the_event_log_says(
    runtime: Runtime, live: LiveServer, pool: WorkerPool
) -> None:
    first = scrape(live)  # counting starts with the first scrape
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("text/plain; version=")
    root = requests.post(f"{live.url}/api/v1/jobs", json=CHAIN, headers=AUTH, timeout=10)
    wait_for_chain(runtime.db, root.json()["id"])

    def counted() -> dict | None:
        found = samples(scrape(live).text)
        done = value(found, "jobchain_jobs_ended_total", job_type="NOOP", status="FINISHED")
        return (
            found
            if done >= 1
            and value(found, "jobchain_jobs_ended_total", job_type="NOOP", status="SKIPPED") >= 1
            else None
        )

    found = wait_until(counted, what="the chain's events to be counted")
    assert value(found, "jobchain_jobs_ended_total", job_type="FAIL", status="FAILED") == 1
    assert value(found, "jobchain_jobs_ended_total", job_type="SLEEP", status="FINISHED") == 1
    sleep_runs = value(
        found, "jobchain_job_run_seconds_count", job_type="SLEEP", outcome="finished"
    )
    assert sleep_runs == 1
    assert (
        value(found, "jobchain_job_run_seconds_sum", job_type="SLEEP", outcome="finished") >= 0.05
    )
    assert value(found, "jobchain_job_run_seconds_count", job_type="FAIL", outcome="failed") == 1
    # Three jobs were claimed (the skipped one never was): three queue waits.
    waits = sum(
        value(found, "jobchain_job_queue_wait_seconds_count", job_type=t)
        for t in ("NOOP", "FAIL", "SLEEP")
    )
    assert waits == 3
    for phase in ("waiting", "ready", "running"):
        assert any(
            name == "jobchain_jobs" and dict(labels)["status"] == phase for name, labels in found
        )
    assert value(found, "jobchain_joins_waiting") == 0
    assert value(found, "jobchain_notifications_pending") == 0


def test_metrics_gauges_count_jobs_not_yet_ended(runtime: Runtime, live: LiveServer) -> None:
    # No workers: the root stays ready, its child waits.
    requests.post(
        f"{live.url}/api/v1/jobs",
        json={"targetObject": "1.NOOP", "nextJobs": [{"targetObject": "2.SLEEP"}]},
        headers=AUTH,
        timeout=10,
    )
    found = samples(scrape(live).text)
    assert value(found, "jobchain_jobs", status="ready", job_type="NOOP") == 1
    assert value(found, "jobchain_jobs", status="waiting", job_type="SLEEP") == 1


def test_automation_gauges_by_model(runtime: Runtime, live: LiveServer) -> None:
    db = runtime.db
    models = {name: graphs.create_model(db, name, None) for name in ("sales", "stock")}
    ids = {
        name: graph_changes.create_asset(db, models["sales"], {"name": name, "job": {}})
        for name in ("a", "b", "c")
    }
    t = now()

    def state(conn: Any) -> None:
        # What ticks leave behind: a and b late, b and c held; two ticks of sales.
        for name, values in {
            "a": {"late_since": t},
            "b": {"late_since": t, "held_at": t},
            "c": {"held_at": t},
        }.items():
            conn.execute(update(assets).where(assets.c.id == ids[name]).values(**values))
        for slot, started, ms in ((1, t - 600, 900.0), (2, t - 30, 12.5)):
            conn.execute(
                insert(automation_ticks).values(
                    model_id=models["sales"],
                    slot=slot,
                    started_at=started,
                    duration_ms=ms,
                    evaluated=3,
                    requested=1,
                    watermark=0,
                    owner="test",
                )
            )

    db.write(state)
    found = samples(scrape(live).text)
    assert value(found, "jobchain_assets_late", model="sales") == 2
    assert value(found, "jobchain_assets_held", model="sales") == 2
    # A model with nothing late or held has its zeros; one that never ticked has no age.
    assert ("jobchain_assets_late", frozenset({("model", "stock")})) in found
    assert value(found, "jobchain_assets_held", model="stock") == 0
    assert 30 <= value(found, "jobchain_automation_tick_age_seconds", model="sales") < 60
    assert value(found, "jobchain_automation_tick_duration_seconds", model="sales") == 0.0125
    assert not any(
        name.startswith("jobchain_automation_tick") and ("model", "stock") in labels
        for name, labels in found
    )


def test_callbacks_are_counted_by_outcome(live: LiveServer) -> None:
    requests.post(f"{live.url}/api/v1/jobs/1/callback", json={}, headers=AUTH, timeout=10)
    found = samples(scrape(live).text)
    assert value(found, "jobchain_callbacks_total", outcome="refused", reason="invalid_signature")


@pytest.fixture
def guarded(runtime: Runtime) -> Iterator[LiveServer]:
    settings = replace(runtime.settings, metrics_token="s3cret-metrics")
    rt = Runtime(settings=settings, db=runtime.db, registry=runtime.registry)
    with LiveServer(create_app(runtime=rt)) as server:
        yield server


def test_a_metrics_token_is_required_once_configured(guarded: LiveServer) -> None:
    assert scrape(guarded).status_code == 401
    assert scrape(guarded, Authorization="Bearer wrong").status_code == 401
    # An API token (even admin's) is not a metrics token.
    assert scrape(guarded, **AUTH).status_code == 401
    ok = scrape(guarded, Authorization="Bearer s3cret-metrics")
    assert ok.status_code == 200
    assert "jobchain_jobs" in ok.text


def test_without_a_token_only_loopback_may_scrape(runtime: Runtime) -> None:
    client = create_app(runtime=runtime).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    away = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert away.status_code == 403
    assert away.get_json()["error"]["code"] == "forbidden"


def test_the_deploy_examples_use_only_metrics_that_exist(
    runtime: Runtime, live: LiveServer, pool: WorkerPool
) -> None:
    """The Grafana dashboard and the Prometheus rules name real series."""
    scrape(live)
    root = requests.post(f"{live.url}/api/v1/jobs", json=CHAIN, headers=AUTH, timeout=10)
    wait_for_chain(runtime.db, root.json()["id"])
    requests.post(f"{live.url}/api/v1/jobs/1/callback", json={}, headers=AUTH, timeout=10)

    def with_run_times() -> str | None:
        text = scrape(live).text
        return text if "jobchain_job_run_seconds_bucket{" in text else None

    text = wait_until(with_run_times, what="run times in a scrape")
    exported = {name for name, _ in samples(text)}
    # Families with no sample yet still declare themselves with # HELP.
    exported |= set(re.findall(r"^# HELP (\w+)", text, re.MULTILINE))
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    for path in (
        deploy / "grafana" / "jobchain-dashboard.json",
        deploy / "prometheus" / "jobchain-alerts.yml",
    ):
        named = set(re.findall(r"\bjobchain_[a-z_]+", path.read_text()))
        assert named, path
        missing = {n for n in named if n not in exported and f"{n}_total" not in exported}
        assert not missing, f"{path.name} names {missing}"
