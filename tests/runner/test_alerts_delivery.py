"""Alerts delivered for real on SQLite and PostgreSQL: a worker pool runs chains that fail,
the dispatcher sends signed webhooks to an http.server receiver and e-mails to an aiosmtpd
server. One notification per event; a failing, slow receiver delays no job and loses no
notification; two dispatchers at once still deliver each notification once. An asset's
LATE event (automation) is told once, to the rules of its model only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from app.alerts.dispatcher import Dispatcher
from app.alerts.matcher import Matcher
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.security.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from app.services.submit import SubmitService
from app.store import asset_versions, graph_changes, graphs, notifications
from app.store.database import Database, now
from app.store.notification_tables import notification_deliveries
from config import Settings
from tests.conftest import TEST_SETTINGS
from tests.helpers import CALLBACK_SECRET, wait_for_chain, wait_until
from tests.runner.receivers import SmtpServer, Webhook, smtp, webhook

__all__ = ["smtp", "webhook"]  # fixtures

FAILING_CHAIN = {
    "targetObject": "155.NOOP",
    "nextJobs": [{"targetObject": "7.FAIL", "nextJobs": [{"targetObject": "8.NOOP"}]}],
}


@pytest.fixture
def settings(database_url: str, smtp: SmtpServer) -> Settings:
    """The test settings with the SMTP server and quick alert retries."""
    return replace(
        TEST_SETTINGS,
        database_url=database_url,
        smtp_port=smtp.port,
        notify_poll_seconds=0.05,
        notify_retry_base_seconds=0.05,
        notify_retry_max_seconds=0.2,
        notify_timeout_seconds=5.0,
    )


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    sender = Dispatcher(runtime.db, runtime.settings).start()
    yield sender
    sender.stop()


def rule(db: Database, name: str, channel: str, target: str, *events: str, **filters: Any) -> int:
    rule_id = notifications.create_rule(
        db, {"name": name, "channel": channel, "target": target, "events": list(events), **filters}
    )
    Matcher(db).match()  # the first pass places the cursors: what follows is news
    return rule_id


def submit(runtime: Runtime, payload: dict[str, Any]) -> int:
    return SubmitService.for_runtime(runtime).submit(payload, "admin").root_id


def deliveries(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(select(notification_deliveries).order_by(notification_deliveries.c.id))
        return [dict(r._mapping) for r in rows]


def all_delivered(db: Database, count: int) -> bool:
    found = deliveries(db)
    return len(found) == count and all(d["status"] == "delivered" for d in found)


def test_one_webhook_and_one_email_per_event(
    runtime: Runtime,
    pool: WorkerPool,
    dispatcher: Dispatcher,
    webhook: Webhook,
    smtp: SmtpServer,
) -> None:
    rule(runtime.db, "hook", "webhook", webhook.url, "job_failed", "chain_failed")
    rule(runtime.db, "mail", "email", "ops@example.com, oncall@example.com", "chain_failed")
    root = submit(runtime, FAILING_CHAIN)
    wait_for_chain(runtime.db, root)
    wait_until(lambda: all_delivered(runtime.db, 3), what="three deliveries")
    dispatcher.run_once()  # more passes find nothing new to send
    dispatcher.run_once()

    bodies = webhook.bodies()
    assert sorted(b["event"] for b in bodies) == ["chain_failed", "job_failed"]
    failed = next(b for b in bodies if b["event"] == "job_failed")
    assert failed["targetObject"] == "7.FAIL"
    assert failed["status"] == "FAILED"
    assert failed["rule"] == "hook"
    chain = next(b for b in bodies if b["event"] == "chain_failed")
    assert (chain["rootId"], chain["failedJobs"], chain["jobs"]) == (root, 1, 3)
    for headers, body in webhook.requests:  # signed as callbacks are
        verify(
            [CALLBACK_SECRET],
            headers[TIMESTAMP_HEADER],
            headers[SIGNATURE_HEADER],
            body,
            time.time(),
        )

    [mail] = smtp.messages
    assert mail["Subject"] == "[jobchain] chain_failed: 155.NOOP"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert f"rootId: {root}" in mail.get_payload()
    assert all(d["attempts"] == 1 for d in deliveries(runtime.db))


def test_a_failing_receiver_delays_no_job_and_loses_no_notification(
    runtime: Runtime, pool: WorkerPool, dispatcher: Dispatcher, webhook: Webhook
) -> None:
    webhook.status, webhook.delay = 500, 0.3  # refuses, and slowly
    rule(runtime.db, "hook", "webhook", webhook.url, "job_failed")
    failing = [submit(runtime, {"targetObject": f"{i}.FAIL"}) for i in range(5)]
    wait_until(
        lambda: len({b["jobId"] for b in webhook.bodies(500)}) == 5,
        what="every notification refused at least once",
    )

    # Jobs keep flowing while the receiver refuses: 30 chains end as fast as ever.
    start = time.monotonic()
    roots = [submit(runtime, {"targetObject": f"{i}.NOOP"}) for i in range(30)]
    for root in roots:
        wait_for_chain(runtime.db, root, timeout=10)
    assert time.monotonic() - start < 5
    pending = deliveries(runtime.db)
    assert {d["status"] for d in pending} == {"pending"}
    errors = [d["last_error"] for d in pending if d["attempts"]]
    assert all(e.startswith("HTTP 500") for e in errors), errors

    webhook.status, webhook.delay = 200, 0.0
    wait_until(lambda: all_delivered(runtime.db, 5), what="every notification delivered")
    delivered = webhook.bodies(200)
    assert sorted(b["jobId"] for b in delivered) == failing  # each once, none lost
    assert all(d["attempts"] >= 2 for d in deliveries(runtime.db))


def test_two_dispatchers_at_once_deliver_each_notification_once(
    runtime: Runtime, pool: WorkerPool, webhook: Webhook
) -> None:
    rule(runtime.db, "hook", "webhook", webhook.url, "job_failed")
    failing = [submit(runtime, {"targetObject": f"{i}.FAIL"}) for i in range(20)]
    for root in failing:
        wait_for_chain(runtime.db, root)
    webhook.delay = 0.02  # sends overlap the other dispatcher's claims
    first = Dispatcher(runtime.db, runtime.settings)
    second = Dispatcher(runtime.db, runtime.settings)
    first.start(), second.start()
    try:
        wait_until(lambda: all_delivered(runtime.db, 20), what="20 deliveries")
    finally:
        first.stop(), second.stop()
    assert len(webhook.requests) == 20
    assert sorted(b["jobId"] for b in webhook.bodies()) == failing
    ids = {h["X-Jobchain-Delivery"] for h, _ in webhook.requests}
    assert len(ids) == 20


def test_an_email_waits_for_the_smtp_server_to_come_back(
    runtime: Runtime, pool: WorkerPool
) -> None:
    late = SmtpServer()  # not listening yet
    rule(runtime.db, "mail", "email", "ops@example.com", "job_failed")
    sender = Dispatcher(runtime.db, replace(runtime.settings, smtp_port=late.port)).start()
    try:
        submit(runtime, {"targetObject": "9.FAIL"})
        wait_until(
            lambda: any(d["attempts"] >= 2 for d in deliveries(runtime.db)),
            what="two refused attempts",
        )
        [refused] = deliveries(runtime.db)
        assert refused["status"] == "pending" and "Connection" in refused["last_error"]
        late.controller.start()
        try:
            wait_until(lambda: all_delivered(runtime.db, 1), what="the e-mail delivered")
            [mail] = late.messages
            assert mail["Subject"] == "[jobchain] job_failed: 9.FAIL"
        finally:
            late.controller.stop()
    finally:
        sender.stop()


def test_an_asset_late_event_is_told_once_to_its_models_rules(
    runtime: Runtime, webhook: Webhook, smtp: SmtpServer
) -> None:
    db = runtime.db
    models = {name: graphs.create_model(db, name, None) for name in ("sales", "stock")}
    daily = {"name": "daily", "job": {"targetObject": "x.NOOP"}}
    asset = {name: graph_changes.create_asset(db, m, daily) for name, m in models.items()}
    rule(db, "sales-hook", "webhook", webhook.url, "asset_late", model="sales")
    rule(db, "stock-mail", "email", "ops@example.com", "asset_late", "asset_held", model="stock")
    t = now()

    def events(conn: Any) -> None:
        # What a tick writes, in its transaction: a late episode of sales' asset, a source's
        # new data (no alert), and stock's asset held (its rule asks for asset_held).
        asset_versions.add_event(
            conn,
            models["sales"],
            asset["sales"],
            "LATE",
            t,
            "daily late by 12 s against maximum lag 2 min",
        )
        asset_versions.add_event(conn, models["sales"], asset["sales"], "NEW_DATA", t, "x")
        asset_versions.add_event(conn, models["stock"], asset["stock"], "HELD", t, "3 failed runs")

    db.write(events)
    settings = replace(runtime.settings, public_url="https://jobchain.example.com/")
    first, second = Dispatcher(db, settings), Dispatcher(db, settings)
    first.start(), second.start()  # two processes' dispatchers: still one each
    try:
        wait_until(lambda: all_delivered(db, 2), what="two deliveries")
        first.run_once(), second.run_once()
    finally:
        first.stop(), second.stop()
    assert len(deliveries(db)) == 2

    [body] = webhook.bodies()
    assert body["event"] == "asset_late" and body["rule"] == "sales-hook"
    assert (body["model"], body["modelId"], body["asset"], body["assetId"]) == (
        "sales",
        models["sales"],
        "daily",
        asset["sales"],
    )
    assert body["message"].startswith("daily late by 12 s")
    assert body["key"].startswith("asset_event:") and body["at"].endswith("Z")
    assert (
        body["link"]
        == f"https://jobchain.example.com/admin/models/{models['sales']}/assets/{asset['sales']}"
    )
    [(headers, _)] = webhook.requests
    assert headers["X-Jobchain-Event"] == "asset_late"
    [mail] = smtp.messages
    assert mail["Subject"] == "[jobchain] asset_held: stock/daily"
    assert "message: 3 failed runs" in mail.get_payload()
