"""Idempotency-Key on POST /api/v1/jobs over real HTTP, on SQLite and PostgreSQL.

The same key and body store one chain, however often and however concurrently they are
sent; another body with that key is a 422; a key past its TTL is forgotten.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from app.store import idempotency
from app.store.database import Database
from app.store.tables import idempotency_keys, jobs
from config import Settings
from tests.helpers import AUTH, LiveServer

TTL_SECONDS = 600.0
TREE: dict[str, Any] = {
    "targetObject": "155.NOOP",
    "parameters": {"price": 1.5},
    "nextJobs": [{"targetObject": "38.NOOP", "executeOnError": True}],
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, idempotency_ttl_seconds=TTL_SECONDS)


def submit(live: LiveServer, body: Any, key: str | None, **kwargs: Any) -> requests.Response:
    headers = dict(AUTH)
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(
        f"{live.url}/api/v1/jobs", json=body, headers=headers, timeout=30, **kwargs
    )


def count(db: Database, table: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_same_key_and_body_returns_the_first_job(live: LiveServer, db: Database) -> None:
    first = submit(live, TREE, "order-4711")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # The same body with other key order, and in the envelope, is the same body.
    again = submit(live, {"data": dict(reversed(list(TREE.items())))}, "order-4711")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/api/v1/jobs/{first.json()['id']}"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(db, jobs) == 2


def test_same_key_with_another_body_is_422(live: LiveServer, db: Database) -> None:
    assert submit(live, TREE, "k1").status_code == 201
    other = submit(live, {**TREE, "parameters": {"price": 2}}, "k1")
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "k1" in error["message"]
    assert count(db, jobs) == 2


def test_requests_without_a_key_are_not_deduplicated(live: LiveServer, db: Database) -> None:
    assert submit(live, TREE, None).status_code == 201
    assert submit(live, TREE, None).status_code == 201
    assert count(db, jobs) == 4
    assert count(db, idempotency_keys) == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_invalid_key_is_400(live: LiveServer, db: Database, key: str) -> None:
    response = submit(live, TREE, key)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert count(db, jobs) == 0


def test_longest_key_is_accepted(live: LiveServer) -> None:
    key = "k" * 255
    assert submit(live, TREE, key).status_code == 201
    assert submit(live, TREE, key).status_code == 200


def test_rejected_submission_records_no_key(live: LiveServer, db: Database) -> None:
    bad = submit(live, {"targetObject": "1.NOPE"}, "k2")
    assert bad.status_code == 400
    assert count(db, idempotency_keys) == 0
    assert submit(live, TREE, "k2").status_code == 201  # the key is still free


def test_ten_concurrent_submissions_store_one_chain(live: LiveServer, db: Database) -> None:
    start = threading.Barrier(10)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def post() -> None:
        with requests.Session() as session:
            start.wait()
            response = session.post(
                f"{live.url}/api/v1/jobs",
                json=TREE,
                headers={**AUTH, "Idempotency-Key": "nightly-2024-03-01"},
                timeout=30,
            )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert count(db, jobs) == 2  # one root and its next job
    assert count(db, idempotency_keys) == 1


def test_key_older_than_the_ttl_starts_a_new_chain(live: LiveServer, db: Database) -> None:
    first = submit(live, TREE, "weekly")
    assert first.status_code == 201
    age(db, "weekly", TTL_SECONDS + 1)
    # Expired, so neither a replay nor a conflict: a new chain, even with another body.
    second = submit(live, {**TREE, "parameters": {"price": 3}}, "weekly")
    assert second.status_code == 201, second.text
    assert second.json()["id"] != first.json()["id"]
    assert submit(live, {**TREE, "parameters": {"price": 3}}, "weekly").status_code == 200
    assert count(db, jobs) == 4


def test_a_key_within_the_ttl_still_counts(live: LiveServer, db: Database) -> None:
    first = submit(live, TREE, "daily")
    age(db, "daily", TTL_SECONDS - 60)
    again = submit(live, TREE, "daily")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_housekeeping_purges_expired_keys_only(live: LiveServer, db: Database) -> None:
    from app.runner.housekeeping import purge_idempotency_keys

    for key in ("old-1", "old-2", "fresh"):
        assert submit(live, TREE, key).status_code == 201
    age(db, "old-1", TTL_SECONDS + 1)
    age(db, "old-2", TTL_SECONDS + 3600)
    purge_idempotency_keys(db, TTL_SECONDS)
    with db.read() as conn:
        left = set(conn.execute(select(idempotency_keys.c.key)).scalars())
    assert left == {"fresh"}
    assert idempotency.purge_expired(db, TTL_SECONDS) == 0
    assert count(db, jobs) == 6  # purging keys never touches jobs


def test_key_validity() -> None:
    assert idempotency.valid_key("order-4711 / 2024-03-01")
    assert idempotency.valid_key("k" * 255)
    # Waitress already refuses most control characters in headers; the check does not rely on it.
    for bad in ("", "k" * 256, "del\x7f", "nul\x00", "line\nbreak"):
        assert not idempotency.valid_key(bad)


def test_body_hash_is_canonical() -> None:
    assert idempotency.body_hash({"a": 1, "b": [1, 2]}) == idempotency.body_hash(
        {"data": {"b": [1, 2], "a": 1}}
    )
    assert idempotency.body_hash({"a": 1}) != idempotency.body_hash({"a": 1.0})


def age(db: Database, key: str, seconds: float) -> None:
    """Make a key ``seconds`` older, instead of waiting that long."""
    db.write(
        lambda conn: conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == key)
            .values(created_at=idempotency_keys.c.created_at - seconds)
        )
    )
