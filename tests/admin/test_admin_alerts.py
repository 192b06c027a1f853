"""The console's alerts page: admins see rules and deliveries and enable, disable and delete
rules; a reader is refused (alert targets are an admin's business, as in the API)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.runtime import Runtime
from app.store import notifications
from app.store.database import Database, now
from app.web import create_app
from tests.admin.test_admin import log_in, post


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def client(runtime: Runtime) -> Iterator[FlaskClient]:
    app: Flask = create_app(runtime=runtime)
    with app.test_client() as test_client:
        yield test_client


def test_alerts_page(client: FlaskClient, db: Database) -> None:
    rule_id = notifications.create_rule(
        db,
        {
            "name": "pager",
            "events": ["job_failed"],
            "channel": "webhook",
            "target": "https://hooks.example.com/x",
            "job_type": "FAIL",
        },
    )
    db.write(
        lambda conn: notifications.add_deliveries(
            conn,
            [
                {
                    "rule_id": rule_id,
                    "event_key": "job_event:1",
                    "event_kind": "job_failed",
                    "payload": {"jobId": 1},
                }
            ],
            now(),
        )
    )
    log_in(client)
    page = client.get("/admin/alerts").text
    assert "pager" in page and "https://hooks.example.com/x" in page and "FAIL" in page
    assert "pending" in page and "job 1" in page
    assert post(client, f"/admin/alerts/{rule_id}/disable").status_code == 303
    assert notifications.get_rule(db, rule_id)["enabled"] is False  # type: ignore[index]
    assert "Alert rule 1 disabled." in client.get("/admin/alerts").text
    post(client, f"/admin/alerts/{rule_id}/enable")
    assert notifications.get_rule(db, rule_id)["enabled"] is True  # type: ignore[index]
    assert post(client, "/admin/alerts/99/enable").status_code == 404
    assert post(client, f"/admin/alerts/{rule_id}/delete").status_code == 303
    assert notifications.get_rule(db, rule_id) is None


def test_readers_may_not_see_alerts(client: FlaskClient, db: Database) -> None:
    from app.store import tokens

    log_in(client, tokens.create(db, "reader", "a reader")[1])
    assert client.get("/admin/alerts").status_code == 403
    assert "/admin/alerts" not in client.get("/admin/jobs").text
