"""Gauges read from the database at scrape time: a handful of small, index-backed queries.

Only jobs not yet ended are counted (the finished millions are never touched), joins by
their state index, schedules and pending notifications by theirs, late and held assets by
their partial indexes, and each model's latest automation tick by its newest id. Registered
on the API's ``/metrics`` only, so however many processes run, each gauge is exported once
per API node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.domain.statuses import Status
from app.store import monitoring
from app.store.database import Database, now

# What an operator calls the statuses that are not ended yet.
PHASES = {
    Status.WAITING_FOR_PARENT.value: "waiting",
    Status.WAITING_FOR_DISPATCH.value: "ready",
    Status.PROCESSING.value: "running",
}
# A schedule whose fire time is this far behind has missed it (its loop is not running).
LATE_SCHEDULE_SECONDS = 60.0


class DatabaseCollector(Collector):
    """Jobs by status and type, waiting joins and their age, late schedules, pending alerts,
    and automation's late and held assets and latest ticks by model."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        t = now()
        with self.db.read() as conn:
            active = monitoring.active_jobs(conn)
            joins_waiting, oldest_join = monitoring.waiting_joins(conn)
            enabled, late = monitoring.schedule_state(conn, t - LATE_SCHEDULE_SECONDS)
            pending, oldest_pending = monitoring.pending_deliveries(conn)
            names = monitoring.model_names(conn)
            late_assets, held_assets = monitoring.assets_late_and_held(conn)
            ticks = monitoring.latest_ticks(conn)
        jobs = GaugeMetricFamily(
            "jobchain_jobs",
            "Jobs not yet ended, by status (waiting, ready, running) and job type.",
            labels=["status", "job_type"],
        )
        seen = set()
        for status, job_type, count in active:
            jobs.add_metric([PHASES[status], job_type], count)
            seen.add(PHASES[status])
        for phase in PHASES.values():  # every status has a series, even at zero
            if phase not in seen:
                jobs.add_metric([phase, ""], 0)
        yield jobs
        yield GaugeMetricFamily(
            "jobchain_joins_waiting", "Joins waiting for branches to arrive.", value=joins_waiting
        )
        yield GaugeMetricFamily(
            "jobchain_join_oldest_waiting_seconds",
            "Age of the oldest join still waiting (0 when none waits).",
            value=max(0.0, t - oldest_join) if oldest_join is not None else 0.0,
        )
        yield GaugeMetricFamily(
            "jobchain_schedules_enabled", "Schedules that are enabled.", value=enabled
        )
        yield GaugeMetricFamily(
            "jobchain_schedules_late",
            f"Enabled schedules whose fire time passed more than {LATE_SCHEDULE_SECONDS:g} s "
            "ago without a fire (a missed fire: no process runs the schedule loop).",
            value=late,
        )
        yield GaugeMetricFamily(
            "jobchain_notifications_pending",
            "Alert notifications not delivered yet (being retried, or just matched).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "jobchain_notification_oldest_pending_seconds",
            "Age of the oldest undelivered notification (0 when none is pending).",
            value=max(0.0, t - oldest_pending) if oldest_pending is not None else 0.0,
        )
        yield from automation_gauges(t, names, late_assets, held_assets, ticks)


def automation_gauges(
    t: float,
    names: Mapping[int, str],
    late: Mapping[int, int],
    held: Mapping[int, int],
    ticks: Mapping[int, tuple[float, float]],
) -> Iterator[Metric]:
    """Per model (labelled by name): assets late and held (every model, zeros included),
    and the age and duration of its latest tick (models that have ticked)."""
    for name, what, counts in (
        ("jobchain_assets_late", "Assets late against their freshness policy", late),
        ("jobchain_assets_held", "Assets held by automation after failed runs", held),
    ):
        family = GaugeMetricFamily(name, f"{what}, by model.", labels=["model"])
        for model_id, model in names.items():
            family.add_metric([model], counts.get(model_id, 0))
        yield family
    age = GaugeMetricFamily(
        "jobchain_automation_tick_age_seconds",
        "Seconds since the latest automation tick of the model that evaluated something "
        "started (an idle tick stores no row).",
        labels=["model"],
    )
    duration = GaugeMetricFamily(
        "jobchain_automation_tick_duration_seconds",
        "How long the latest automation tick of the model took.",
        labels=["model"],
    )
    for model_id, (started_at, duration_ms) in ticks.items():
        if model_id in names:
            age.add_metric([names[model_id]], max(0.0, t - started_at))
            duration.add_metric([names[model_id]], duration_ms / 1000.0)
    yield age
    yield duration
