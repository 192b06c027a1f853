"""The console's alerts page: admins see rules and deliveries, create rules through the API's
validation, and enable, disable and delete them; a reader is refused (alert targets are an
admin's business, as in the API)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.runtime import Runtime
from app.store import notifications
from app.store.database import Database, now
from app.web import create_app
from tests.admin.test_admin import csrf, log_in, post
from tests.helpers import ADMIN_TOKEN


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


def create(client: FlaskClient, **form: Any) -> Any:
    return client.post("/admin/alerts", data={"csrf_token": csrf(client), **form})


def field_error(page: str, field: str) -> str:
    """The text shown next to a form field (empty if none)."""
    start = page.find(f'id="error-{field}">')
    if start < 0:
        return ""
    start = page.index(">", start) + 1
    return html.unescape(page[start : page.index("</p>", start)])


def test_a_rule_created_with_the_form_is_listed(client: FlaskClient, db: Database) -> None:
    log_in(client)
    answer = create(
        client,
        name="lpg-pager",
        events=["job_failed", "lease_expired"],
        channel="webhook",
        target=" https://hooks.example.com/lpg ",
        jobType="LPG",
        targetObject="155.*",
        schedule="",
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/alerts#rule-1"
    [rule] = notifications.list_rules(db)
    assert rule["name"] == "lpg-pager" and rule["enabled"] is True
    assert rule["events"] == ["job_failed", "lease_expired"]
    assert (rule["channel"], rule["target"]) == ("webhook", "https://hooks.example.com/lpg")
    assert (rule["job_type"], rule["target_object"], rule["schedule"]) == ("LPG", "155.*", None)
    page = client.get("/admin/alerts").text
    assert "Alert rule lpg-pager created." in page
    assert 'id="rule-1"' in page and "https://hooks.example.com/lpg" in page

    answer = create(
        client,
        name="mail",
        events="chain_failed",
        channel="email",
        target="ops@example.com, oncall@example.com",
        schedule="nightly",
    )
    assert answer.status_code == 303
    found = notifications.get_rule(db, 2)
    assert found is not None and found["schedule"] == "nightly" and found["job_type"] is None

    assets = create(
        client,
        name="sales",
        events=["asset_late", "asset_held"],
        channel="webhook",
        target="https://hooks.example.com/sales",
        model="sales",
    )
    assert assets.status_code == 303
    found = notifications.get_rule(db, 3)
    assert found is not None and found["model"] == "sales"
    assert "model <code>sales</code>" in client.get("/admin/alerts").text


def test_an_asset_delivery_links_to_its_model(client: FlaskClient, db: Database) -> None:
    rule_id = notifications.create_rule(
        db,
        {
            "name": "late",
            "events": ["asset_late"],
            "channel": "webhook",
            "target": "https://hooks.example.com/x",
        },
    )
    facts = {"model": "sales", "modelId": 3, "asset": "daily", "assetId": 17}
    owed = {"rule_id": rule_id, "event_key": "asset_event:1", "event_kind": "asset_late"}
    db.write(lambda conn: notifications.add_deliveries(conn, [{**owed, "payload": facts}], now()))
    log_in(client)
    page = client.get("/admin/alerts").text
    assert '<a href="/admin/models/3/assets/17">sales/daily</a>' in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": ""}, "name", "Missing data for required field."),
        ({"name": "x" * 256}, "name", "Length must be between 1 and 255."),
        ({"name": "bad\x00name"}, "name", "must be printable text"),
        ({"events": []}, "events", "Missing data for required field."),
        ({"events": ["job_failed", "nope"]}, "events", "Must be one of: job_failed"),
        ({"channel": "sms"}, "channel", "Must be one of: webhook, email."),
        ({"target": "ftp://hooks.example.com"}, "target", "must be an http:// or https:// URL"),
        ({"target": ""}, "target", "Missing data for required field."),
        (
            {"channel": "email", "target": "ops@example.com, not an address"},
            "target",
            "must be e-mail addresses separated by commas",
        ),
        ({"jobType": "J" * 65}, "jobType", "Length must be between 1 and 64."),
        ({"targetObject": "155.\x01"}, "targetObject", "must be printable text"),
        ({"schedule": "s" * 256}, "schedule", "Length must be between 1 and 255."),
        ({"model": "m" * 101}, "model", "Length must be between 1 and 100."),
    ],
)
def test_a_bad_rule_is_refused_next_to_its_field(
    client: FlaskClient, db: Database, form: dict[str, Any], field: str, message: str
) -> None:
    good = {
        "name": "pager",
        "events": ["job_failed"],
        "channel": "webhook",
        "target": "https://hooks.example.com/x",
    }
    log_in(client)
    answer = create(client, **{**good, **form})
    assert answer.status_code == 400
    assert message in field_error(answer.text, field)
    assert "The rule was not created" in answer.text
    assert notifications.list_rules(db) == []
    # what was typed comes back, so only the bad field needs fixing
    if field != "name":
        assert 'value="pager"' in answer.text


def test_the_form_says_what_the_api_says(client: FlaskClient, db: Database) -> None:
    """One validation: the API's messages for a bad rule are the ones next to the fields."""
    bad = {"name": "pager", "events": ["nope"], "channel": "webhook", "target": "mailto:x"}
    api = client.post(
        "/api/v1/notification-rules",
        json=bad,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert api.status_code == 400
    details = api.get_json()["error"]["details"]
    log_in(client)
    page = create(client, **bad).text
    assert field_error(page, "events") == " ".join(details["events"]["0"])
    assert field_error(page, "target") == " ".join(details["target"])
    assert notifications.list_rules(db) == []


def test_a_name_in_use_is_refused(client: FlaskClient, db: Database) -> None:
    form = {"name": "pager", "events": "job_failed", "channel": "webhook"}
    log_in(client)
    assert create(client, **form, target="https://a.example.com").status_code == 303
    answer = create(client, **form, target="https://b.example.com")
    assert answer.status_code == 409
    assert "already exists" in field_error(answer.text, "name")
    assert [r["target"] for r in notifications.list_rules(db)] == ["https://a.example.com"]


def test_unexpected_form_fields_are_ignored(client: FlaskClient, db: Database) -> None:
    """Only the rule's fields reach the schema (which refuses unknown ones): a stray field
    neither fails nor sneaks a value in."""
    log_in(client)
    answer = create(
        client,
        name="pager",
        events="job_failed",
        channel="webhook",
        target="https://hooks.example.com/x",
        enabled="false",
        id="7",
    )
    assert answer.status_code == 303
    [rule] = notifications.list_rules(db)
    assert rule["id"] == 1 and rule["enabled"] is True


def test_only_admins_create_rules_and_only_with_the_csrf_token(
    client: FlaskClient, db: Database
) -> None:
    from app.store import tokens

    form = {
        "name": "pager",
        "events": "job_failed",
        "channel": "webhook",
        "target": "https://hooks.example.com/x",
    }
    assert client.post("/admin/alerts", data=form).status_code == 403  # no CSRF token
    log_in(client)
    assert client.post("/admin/alerts", data=form).status_code == 403
    assert client.post("/admin/alerts", data={**form, "csrf_token": "forged"}).status_code == 403
    assert notifications.list_rules(db) == []

    for role in ("reader", "submitter", "integration"):
        client.post("/admin/logout", data={"csrf_token": csrf(client)})
        log_in(client, tokens.create(db, role, f"a {role}")[1])
        assert create(client, **form).status_code == 403
    assert notifications.list_rules(db) == []
