"""Turning new rows of the event log, the schedule fires and the asset events into
deliveries owed.

One pass is one transaction: lock the source's cursor, read the rows after it (and the
holes it remembers), derive the events, insert one delivery per (rule, event) a rule
wants, move the cursor on. The cursor lock makes processes take turns; the unique
(rule, event) constraint makes a repeated insert a no-op. Either alone would do; both
together mean a stretch of events is never matched twice, nor skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from app.alerts.events import (
    ASSET_KINDS,
    CHAIN_FAILED,
    JOB_FAILED,
    JOIN_FAILED,
    LEASE_EXPIRED,
    SCHEDULE_FIRE_FAILED,
    Event,
    wants,
)
from app.domain.statuses import TERMINAL, Status, Transition
from app.store import alert_sources, monitoring, notifications
from app.store.database import Database, now

EVENTS, FIRES, ASSETS = "job_events", "schedule_fires", "asset_events"
# Each source: its newest id, and its rows after a cursor. Cursors are locked in this order.
SOURCES: dict[str, tuple[Callable[[Connection], int], Callable[..., Sequence[Any]]]] = {
    EVENTS: (monitoring.last_event_id, monitoring.events_after),
    FIRES: (monitoring.last_fire_id, monitoring.fires_after),
    ASSETS: (monitoring.last_asset_event_id, monitoring.asset_events_after),
}
BATCH = 2000
# Batches matched in a row at most, before the dispatcher sends what they owe.
MAX_PASSES = 10
# Without any enabled rule the cursors are only moved to the head this often.
IDLE_ADVANCE_SECONDS = 60.0
LEASE_REASONS = {Transition.RERUN.value, Transition.INTERRUPT.value}


class Matcher:
    """Records the deliveries owed for events since the last pass (any process's)."""

    def __init__(self, db: Database, batch: int = BATCH, public_url: str = "") -> None:
        self.db = db
        self.batch = batch
        # Links in notifications (a model's console page) start with it; relative without.
        self.public_url = public_url.rstrip("/")
        self._idle_advanced_at = 0.0

    def match(self) -> int:
        """One pass; returns how many deliveries were added."""
        with self.db.read() as conn:
            rules = notifications.enabled_rules(conn)
            heads = {source: head(conn) for source, (head, _) in SOURCES.items()}
            cursors = {s: alert_sources.peek_cursor(conn, s) for s in heads}
        behind = any(c is None or c.last_id < heads[s] or c.gaps for s, c in cursors.items())
        if not rules:
            if behind and now() - self._idle_advanced_at > IDLE_ADVANCE_SECONDS:
                self.db.write(lambda conn: self._skip_to(conn, heads))
                self._idle_advanced_at = now()
            return 0
        if not behind:
            return 0
        added = 0
        for _ in range(MAX_PASSES):  # a backlog is caught up a batch at a time
            new, full = self.db.write(lambda conn: self._pass(conn, heads))
            added += new
            if not full:
                break
        return added

    def _skip_to(self, conn: Connection, heads: Mapping[str, int]) -> None:
        for source, head in heads.items():
            cursor = alert_sources.lock_cursor(conn, source, head)
            cursor.last_id, cursor.gaps = max(cursor.last_id, head), {}
            alert_sources.save_cursor(conn, source, cursor, now())

    def _pass(self, conn: Connection, heads: Mapping[str, int]) -> tuple[int, bool]:
        """Match one batch; returns (deliveries added, whether a batch was full)."""
        t = now()
        rules = notifications.enabled_rules(conn)  # under the lock: the rules as of now
        cursors, read = {}, {}
        for source, (_, rows_after) in SOURCES.items():
            cursor = cursors[source] = alert_sources.lock_cursor(conn, source, heads[source])
            read[source] = rows_after(conn, cursor.last_id, self.batch, cursor.wanted())
        kinds = {kind for rule in rules for kind in rule["events"]}
        found = job_alerts(conn, read[EVENTS], kinds) + fire_alerts(read[FIRES])
        found += asset_alerts(read[ASSETS], self.public_url)
        if any(rule.get("schedule") for rule in rules):
            found = with_schedules(conn, found)
        owed = [
            {
                "rule_id": rule["id"],
                "event_key": event.key,
                "event_kind": event.kind,
                "payload": payload(event, rule),
            }
            for event in found
            for rule in rules
            if wants(rule, event)
        ]
        added = notifications.add_deliveries(conn, owed, t)
        for source, cursor in cursors.items():
            cursor.advance((row.id for row in read[source]), t)
            alert_sources.save_cursor(conn, source, cursor, t)
        return added, any(len(rows) == self.batch for rows in read.values())


def job_alerts(conn: Connection, rows: Sequence[Any], kinds: set[str]) -> list[Event]:
    """The events of a batch of job-event rows: failures and lease expiries one by one,
    failed chains and joins once each (keyed so that a retry makes a new one)."""
    found: list[Event] = []
    ended_roots: dict[int, float] = {}
    failed_joins: dict[int, Any] = {}
    for row in rows:
        failed = row.to_status == Status.FAILED.value and row.from_status != row.to_status
        # A failed join is one join_failed event, not one job_failed per JOIN node.
        if failed and row.reason != Transition.JOIN_FAILED.value:
            found.append(_job_event(JOB_FAILED, row))
        if row.reason in LEASE_REASONS:
            found.append(_job_event(LEASE_EXPIRED, row))
        if row.reason == Transition.JOIN_FAILED.value and row.join_id is not None:
            failed_joins.setdefault(int(row.join_id), row)
        if row.to_status in TERMINAL:
            ended_roots[int(row.root_id)] = max(row.at, ended_roots.get(int(row.root_id), 0.0))
    if CHAIN_FAILED in kinds and ended_roots:
        found.extend(_failed_chains(conn, ended_roots))
    if JOIN_FAILED in kinds and failed_joins:
        decisions = alert_sources.join_decisions(conn, failed_joins)
        for join_id, row in failed_joins.items():
            join = decisions.get(join_id)
            if join is None or join.state != "FAILED":
                continue  # retried since and deciding again
            facts = {**_job_facts(row), "joinId": join_id, "joinKey": join.key}
            facts["message"] = join.message or row.message
            found.append(
                Event(
                    JOIN_FAILED,
                    f"join:{join_id}:{join.decided_at!r}",
                    row.at,
                    row.job_type,
                    row.target_object,
                    facts=facts,
                )
            )
    return found


def _failed_chains(conn: Connection, ended: Mapping[int, float]) -> list[Event]:
    states = alert_sources.chains(conn, ended)
    done = [root for root, s in states.items() if s.active == 0 and s.failed > 0]
    heads = alert_sources.roots(conn, done)
    found = []
    for root in done:
        state, head = states[root], heads.get(root)
        facts = {
            "rootId": root,
            "targetObject": head.target_object if head else None,
            "jobType": head.job_type if head else None,
            "failedJobs": int(state.failed),
            "jobs": int(state.total),
        }
        found.append(
            Event(
                CHAIN_FAILED,
                f"chain:{root}:{int(state.attempts or 0)}",
                ended[root],
                head.job_type if head else None,
                head.target_object if head else None,
                facts=facts,
            )
        )
    return found


def fire_alerts(fires: Sequence[Any]) -> list[Event]:
    return [
        Event(
            SCHEDULE_FIRE_FAILED,
            f"fire:{fire.id}",
            fire.fired_at,
            schedule=fire.schedule,
            facts={
                "schedule": fire.schedule,
                "scheduleId": fire.schedule_id,
                "fireTime": iso(fire.fire_time),
                "message": fire.message,
            },
        )
        for fire in fires
        if fire.root_job_id is None
    ]


def asset_alerts(rows: Sequence[Any], public_url: str) -> list[Event]:
    """The events of a batch of asset_events rows: late, recovered, held, released (a
    source's new data is no alert)."""
    return [
        Event(
            ASSET_KINDS[row.kind],
            f"asset_event:{row.id}",
            row.at,
            model=row.model,
            facts={
                "model": row.model,
                "modelId": row.model_id,
                "asset": row.asset,
                "assetId": row.asset_id,
                "message": row.message,
                # The model's console page, the asset's drawer open.
                "link": f"{public_url}/admin/models/{row.model_id}/assets/{row.asset_id}",
            },
        )
        for row in rows
        if row.kind in ASSET_KINDS
    ]


def with_schedules(conn: Connection, found: list[Event]) -> list[Event]:
    """Name the schedule that started each event's chain (for rules filtered by one)."""
    roots = [int(e.facts["rootId"]) for e in found if e.schedule is None and "rootId" in e.facts]
    names = alert_sources.schedules_of(conn, roots)
    return [
        dataclasses.replace(e, schedule=names.get(int(e.facts["rootId"])))
        if e.schedule is None and "rootId" in e.facts
        else e
        for e in found
    ]


def payload(event: Event, rule: Mapping[str, Any]) -> dict[str, Any]:
    """What the receiver gets (the webhook's JSON body; the facts of an e-mail)."""
    return {
        "event": event.kind,
        "key": event.key,
        "at": iso(event.at),
        "rule": rule["name"],
        **({"schedule": event.schedule} if event.schedule else {}),
        **event.facts,
    }


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _job_event(kind: str, row: Any) -> Event:
    return Event(
        kind, f"job_event:{row.id}", row.at, row.job_type, row.target_object, facts=_job_facts(row)
    )


def _job_facts(row: Any) -> dict[str, Any]:
    return {
        "jobId": row.job_id,
        "rootId": row.root_id,
        "targetObject": row.target_object,
        "jobType": row.job_type,
        "status": row.to_status,
        "attempt": row.attempt,
        "reason": row.reason,
        "message": row.message,
    }
