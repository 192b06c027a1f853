"""EXTERNAL jobs end to end: a real HTTP server plays the integration system.

jobchain notifies it; it (or the test) answers with a signed callback over HTTP to the live
API, and the chain goes on by the usual rules: next jobs, executeOnError, a JOIN after it.
Runs on SQLite and PostgreSQL with real workers and housekeeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from app.runner.housekeeping import start_housekeeping
from app.runner.worker_pool import WorkerPool
from app.runtime import Runtime
from app.security.signatures import sign
from app.store import queries
from app.store.database import Database
from config import Settings
from jobs import external as external_job
from tests.helpers import (
    AUTH,
    CALLBACK_SECRET,
    LiveServer,
    flatten,
    wait_for_chain,
    wait_for_status,
    wait_until,
)

ROTATED_SECRET = "next-callback-secret"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Mid-rotation: both the current and the next secret are accepted.
    return replace(settings, callback_secrets=(CALLBACK_SECRET, ROTATED_SECRET))


@pytest.fixture(autouse=True)
def quick_notify_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(external_job, "NOTIFY_BACKOFF_SECONDS", 0.05)


@pytest.fixture
def housekeeping(db: Database, settings: Settings) -> Iterator[None]:
    scheduler = start_housekeeping(db, settings.reap_interval_seconds)
    yield
    scheduler.shutdown(wait=False)


# -- the integration system ----------------------------------------------------------------


@dataclass
class IntegrationSystem:
    """Receives notifications; optionally answers 500 first, optionally calls back itself."""

    url: str = ""
    notifications: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failures_before_success: int = 0
    # Sent by the system itself after it acknowledged the notification.
    reply: dict[str, Any] | None = None
    # Sent while the notification is still unanswered (before jobchain hands over).
    reply_before_ack: dict[str, Any] | None = None
    callback_answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> int:
        with self.lock:
            return len(self.notifications)

    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.notifications[-1]


def _handler(system: IntegrationSystem) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            note = json.loads(self.rfile.read(length))
            with system.lock:
                system.notifications.append(note)
                system.headers.append(dict(self.headers))
                failing = system.failures_before_success > 0
                if failing:
                    system.failures_before_success -= 1
            if failing:
                self._answer(500)
                return
            if system.reply_before_ack is not None:
                body = {
                    **system.reply_before_ack,
                    "attempt": note["attempt"],
                    "jobId": note["jobId"],
                }
                system.callback_answers.append(callback(note["callbackUrl"], body).status_code)
            self._answer(202)
            if system.reply is not None:
                body = {**system.reply, "attempt": note["attempt"], "jobId": note["jobId"]}
                threading.Thread(target=self._call_back, args=(note, body), daemon=True).start()

        def _call_back(self, note: dict[str, Any], body: dict[str, Any]) -> None:
            system.callback_answers.append(callback(note["callbackUrl"], body).status_code)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def system() -> Iterator[IntegrationSystem]:
    fake = IntegrationSystem()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/notify"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def callback(
    url: str,
    body: Any,
    secret: str = CALLBACK_SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """What an integration system sends: the raw body, signed over timestamp.body.

    A final status carries jobId (from the URL) and attempt 1 unless the test gives them.
    """
    job_id = int(url.rstrip("/").split("/")[-2])
    if isinstance(body, dict) and "status" in body and job_id < 2**63:
        body = {"jobId": job_id, "attempt": 1, **body}
    raw = json.dumps(body).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = {
        "Content-Type": "application/json",
        "X-Jobchain-Timestamp": stamp,
        "X-Jobchain-Signature": sign(secret, stamp, raw),
    }
    return requests.post(url, data=raw, headers={**AUTH, **signed, **(headers or {})}, timeout=30)


# -- helpers -----------------------------------------------------------------------------


def submit(live: LiveServer, body: dict[str, Any]) -> int:
    response = requests.post(f"{live.url}/api/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def ext(system: IntegrationSystem, target: str = "sap.EXTERNAL", **kw: Any) -> dict[str, Any]:
    parameters = {"notifyUrl": system.url, **kw.pop("parameters", {})}
    return {"targetObject": target, "parameters": parameters, **kw}


def job(db: Database, job_id: int) -> dict[str, Any]:
    found = queries.get_job(db, job_id)
    assert found is not None
    return found


def waiting_for_callback(db: Database, job_id: int) -> dict[str, Any]:
    """Wait until the worker handed the job to its callback deadline."""
    return wait_until(
        lambda: (j := job(db, job_id))["lease_owner"] == "external" and j,
        what=f"job {job_id} to wait for its callback",
    )


def callback_url(live: LiveServer, job_id: int) -> str:
    return f"{live.url}/api/v1/jobs/{job_id}/callback"


def external_job_waiting(
    live: LiveServer, db: Database, system: IntegrationSystem
) -> tuple[int, str]:
    """An EXTERNAL job, notified and waiting for its callback; its id and callback URL."""
    job_id = submit(live, ext(system))
    waiting_for_callback(db, job_id)
    return job_id, callback_url(live, job_id)


def by_target(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["target_object"]: node for node in flatten(tree)}


def reasons(db: Database, job_id: int) -> list[str]:
    events = queries.get_events(db, job_id)
    assert events is not None
    return [e["reason"] for e in events]


def chain_with_join(system: IntegrationSystem, **ext_kw: Any) -> dict[str, Any]:
    """start -> (sap.EXTERNAL -> after, cleanup[executeOnError], both.JOIN -> report),
    (other.NOOP -> both.JOIN)."""
    join = {"targetObject": "both.JOIN"}
    return {
        "targetObject": "start.NOOP",
        "nextJobs": [
            ext(
                system,
                nextJobs=[
                    {"targetObject": "after.NOOP"},
                    {"targetObject": "cleanup.NOOP", "executeOnError": True},
                    {**join, "nextJobs": [{"targetObject": "report.NOOP"}]},
                ],
                **ext_kw,
            ),
            {"targetObject": "other.NOOP", "nextJobs": [join]},
        ],
    }


# -- the chain goes on -------------------------------------------------------------------


def test_finished_callback_continues_the_chain(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    system.reply = {"status": "FINISHED", "message": "posted", "result": {"document": "4711"}}
    root = submit(live, chain_with_join(system, parameters={"plant": "B"}))
    nodes = by_target(wait_for_chain(db, root))
    assert {name: n["status"] for name, n in nodes.items()} == {
        "start.NOOP": "FINISHED",
        "sap.EXTERNAL": "FINISHED",
        "after.NOOP": "FINISHED",
        "cleanup.NOOP": "FINISHED",
        "other.NOOP": "FINISHED",
        "both.JOIN": "FINISHED",
        "report.NOOP": "FINISHED",
    }
    sap = nodes["sap.EXTERNAL"]
    assert sap["result"] == {"document": "4711"}
    assert sap["message"] == "posted"
    assert sap["lease_owner"] is None
    wait_until(lambda: system.callback_answers == [200], what="the callback's answer")
    assert reasons(db, sap["id"])[-1] == "callback FINISHED"

    note = system.last()
    assert note["jobId"] == sap["id"]
    assert note["rootId"] == root
    assert note["targetObject"] == "sap.EXTERNAL"
    assert note["targetId"] == "sap"
    assert note["parameters"] == {"notifyUrl": system.url, "plant": "B"}
    assert note["attempt"] == 1
    assert note["callbackUrl"] == callback_url(live, sap["id"])
    assert system.headers[-1]["Idempotency-Key"] == f"jobchain-{sap['id']}-1"


def test_failed_callback_follows_the_failure_rules(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    system.reply = {"status": "FAILED", "message": "posting period closed"}
    root = submit(live, chain_with_join(system))
    nodes = by_target(wait_for_chain(db, root))
    assert nodes["sap.EXTERNAL"]["status"] == "FAILED"
    assert nodes["sap.EXTERNAL"]["message"] == "posting period closed"
    assert nodes["after.NOOP"]["status"] == "SKIPPED"
    assert nodes["cleanup.NOOP"]["status"] == "FINISHED"  # executeOnError
    assert nodes["other.NOOP"]["status"] == "FINISHED"
    assert nodes["both.JOIN"]["status"] == "FAILED"  # ends with its join's decision
    assert nodes["report.NOOP"]["status"] == "SKIPPED"  # all_success join failed


def test_callback_before_the_notification_is_answered(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    """The system may call back before it answers the notification: the job ends then, and
    the worker's later hand-over changes nothing."""
    system.reply_before_ack = {"status": "FINISHED"}
    root = submit(live, {**ext(system), "nextJobs": [{"targetObject": "after.NOOP"}]})
    nodes = by_target(wait_for_chain(db, root))
    assert nodes["sap.EXTERNAL"]["status"] == "FINISHED", nodes["sap.EXTERNAL"]["message"]
    assert nodes["after.NOOP"]["status"] == "FINISHED"
    wait_until(lambda: system.callback_answers == [200], what="the callback's answer")
    assert "notified" not in " ".join(reasons(db, root))
    assert nodes["sap.EXTERNAL"]["lease_owner"] is None


def test_waiting_job_holds_no_worker(
    live: LiveServer, runtime: Runtime, db: Database, system: IntegrationSystem
) -> None:
    """A single worker can hand several EXTERNAL jobs over: none occupies it."""
    runtime.settings = replace(runtime.settings, workers=1)
    workers = WorkerPool(db, runtime.registry, runtime.settings).start()
    try:
        ids = [submit(live, ext(system, target=f"{n}.EXTERNAL")) for n in range(3)]
        for job_id in ids:
            waiting_for_callback(db, job_id)
        assert workers.running_ids() == []
        assert all(job(db, i)["status"] == "PROCESSING" for i in ids)
        assert all(job(db, i)["message"] == "waiting for callback" for i in ids)
    finally:
        workers.stop(grace_seconds=5)


def test_progress_only_callback_keeps_the_job_running(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    job_id = submit(live, ext(system))
    before = waiting_for_callback(db, job_id)
    url = callback_url(live, job_id)
    answer = callback(url, {"progress": 40, "message": "posting 400 of 1000 lines"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "PROCESSING"
    now = job(db, job_id)
    assert now["status"] == "PROCESSING"
    assert now["progress"] == 40
    assert now["message"] == "posting 400 of 1000 lines"
    assert now["lease_expires_at"] == before["lease_expires_at"]  # the deadline stays
    assert callback(url, {"progress": 80, "attempt": 1}).status_code == 200
    assert job(db, job_id)["progress"] == 80
    assert callback(url, {"status": "FINISHED", "attempt": 1}).status_code == 200
    assert wait_for_status(db, job_id, "FINISHED")
    assert job(db, job_id)["progress"] == 80


# -- signatures ------------------------------------------------------------------------------


def test_signatures(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    job_id, url = external_job_waiting(live, db, system)
    progress = {"progress": 10}

    def refused(response: requests.Response, words: str) -> None:
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_signature"
        assert words in error["message"]

    refused(callback(url, progress, secret="not-the-secret"), "does not match")
    tampered = callback(url, progress, headers={"X-Jobchain-Signature": "sha256=" + "0" * 64})
    refused(tampered, "does not match")
    refused(callback(url, progress, headers={"X-Jobchain-Signature": "md5=abc"}), "sha256=")
    refused(callback(url, progress, timestamp=int(time.time()) - 301), "old")
    refused(callback(url, progress, timestamp=int(time.time()) + 301), "future")
    refused(callback(url, progress, headers={"X-Jobchain-Timestamp": "soon"}), "unix seconds")
    unsigned = requests.post(url, json={"status": "FINISHED"}, headers=AUTH, timeout=30)
    refused(unsigned, "missing X-Jobchain-Timestamp")
    # A signature over other bytes than those sent (the body was altered on the way).
    stamp = str(int(time.time()))
    swapped = {
        "X-Jobchain-Timestamp": stamp,
        "X-Jobchain-Signature": sign(CALLBACK_SECRET, stamp, b'{"progress": 10}'),
    }
    altered = requests.post(
        url, data=b'{"status": "FAILED"}', headers={**AUTH, **swapped}, timeout=30
    )
    refused(altered, "does not match")
    # Unknown ids are refused the same way before anything is looked up.
    refused(callback(callback_url(live, 999999), progress, secret="wrong"), "does not match")
    assert job(db, job_id)["progress"] is None  # nothing refused changed anything

    # Within the window, and with either secret of a rotation.
    assert callback(url, progress, timestamp=int(time.time()) - 290).status_code == 200
    assert callback(url, {"progress": 20}, secret=ROTATED_SECRET).status_code == 200
    assert job(db, job_id)["progress"] == 20
    assert callback(url, {"status": "FINISHED"}, secret=ROTATED_SECRET).status_code == 200
    assert wait_for_status(db, job_id, "FINISHED")


def test_no_configured_secret_refuses_callbacks(
    live: LiveServer, runtime: Runtime, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    job_id = submit(live, ext(system))
    waiting_for_callback(db, job_id)
    runtime.settings = replace(runtime.settings, callback_secrets=())
    unknown = callback(callback_url(live, job_id + 1000), {"status": "FINISHED"})
    assert unknown.status_code == 404, unknown.text
    answer = callback(callback_url(live, job_id), {"status": "FINISHED"})
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "callbacks_not_configured"
    assert "JOBCHAIN_CALLBACK_SECRETS" in error["message"]
    assert job(db, job_id)["status"] == "PROCESSING"


def test_invalid_bodies_are_400_with_paths(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    job_id, url = external_job_waiting(live, db, system)
    cases: list[tuple[Any, set[str]]] = [
        ({"status": "DONE", "progress": "50", "attempt": True}, {"status", "progress", "attempt"}),
        ({"status": "FINISHED", "extra": 1}, {"extra"}),
        ({"progress": 101}, {"progress"}),
        ({}, {"$"}),
        ({"result": {"a": 1}}, {"$"}),
        ({"result": {"a": 1}, "progress": 5}, {"result"}),
        ({"status": "FINISHED", "result": "x" * 70_000}, {"result"}),
        ({"status": "FINISHED", "jobId": job_id + 1}, {"jobId"}),
        ([1, 2], {"$"}),
    ]
    for body, paths in cases:
        answer = callback(url, body)
        assert answer.status_code == 400, (body, answer.text)
        assert set(answer.json()["error"]["details"]) == paths, (body, answer.text)
    not_json = callback(url, "ignored", headers={})
    assert not_json.status_code == 400  # a JSON string, not an object
    assert job(db, job_id)["status"] == "PROCESSING"
    done = callback(url, {"status": "FINISHED", "jobId": job_id})
    assert done.status_code == 200, done.text


# -- replays, conflicts and attempts ------------------------------------------------------


def test_replayed_final_callback_is_a_no_op_and_a_conflicting_one_409(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    root = submit(live, {**ext(system), "nextJobs": [{"targetObject": "after.NOOP"}]})
    waiting_for_callback(db, root)
    url = callback_url(live, root)
    final = {"status": "FINISHED", "attempt": 1, "result": {"n": 1}}
    assert callback(url, final).status_code == 200
    tree = wait_for_chain(db, root)
    after = by_target(tree)["after.NOOP"]

    replay = callback(url, final)
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "FINISHED"
    assert callback(url, {"status": "FINISHED"}).status_code == 200  # attempt implied
    conflicting = callback(url, {"status": "FAILED", "attempt": 1})
    assert conflicting.status_code == 409, conflicting.text
    assert "already ended FINISHED" in conflicting.json()["error"]["message"]
    late_progress = callback(url, {"progress": 99})
    assert late_progress.status_code == 409
    assert "not running" in late_progress.json()["error"]["message"]

    assert reasons(db, root).count("callback FINISHED") == 1
    assert reasons(db, after["id"]).count("claim") == 1  # the next job ran once
    assert job(db, root)["result"] == {"n": 1}


def test_callback_for_another_attempt_is_409(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    job_id, url = external_job_waiting(live, db, system)
    future = callback(url, {"status": "FINISHED", "attempt": 2})
    assert future.status_code == 409, future.text
    assert "attempt 2" in future.json()["error"]["message"]
    assert callback(url, {"progress": 5, "attempt": 3}).status_code == 409
    assert job(db, job_id)["status"] == "PROCESSING"
    assert callback(url, {"status": "FINISHED", "attempt": 1}).status_code == 200


def test_failed_attempt_is_retried_and_old_attempts_are_409(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    """maxAttempts applies as to any job: a FAILED callback with attempts left re-runs
    the job, which notifies again with the next attempt number."""
    job_id = submit(live, ext(system, maxAttempts=2))
    waiting_for_callback(db, job_id)
    url = callback_url(live, job_id)
    assert callback(url, {"status": "FAILED", "message": "busy", "attempt": 1}).status_code == 200
    wait_until(lambda: system.received() == 2, what="the second notification")
    assert system.last()["attempt"] == 2
    wait_until(lambda: job(db, job_id)["lease_owner"] == "external" and job(db, job_id))

    stale = callback(url, {"status": "FINISHED", "attempt": 1})
    assert stale.status_code == 409, stale.text
    assert "attempt 1 of job" in stale.json()["error"]["message"]
    assert "already ended and was retried" in stale.json()["error"]["message"]
    assert callback(url, {"progress": 50, "attempt": 1}).status_code == 409
    # The first attempt's own final callback, delivered again, is still a no-op.
    assert callback(url, {"status": "FAILED", "message": "busy", "attempt": 1}).status_code == 200
    assert job(db, job_id)["status"] == "PROCESSING"

    assert callback(url, {"status": "FINISHED", "attempt": 2}).status_code == 200
    assert wait_for_status(db, job_id, "FINISHED")
    done = job(db, job_id)
    assert done["attempt"] == 2
    # Each attempt ran from its notification's start until its callback ended it.
    events = queries.get_events(db, job_id) or []
    ends = [e for e in events if e["reason"].startswith("callback ")]
    claims = [e for e in events if e["reason"] == "claim"]
    assert [e["attempt"] for e in ends] == [1, 2] == [e["attempt"] for e in claims]
    for claimed, end in zip(claims, ends, strict=True):
        assert claimed["at"] <= end["started_at"] < end["finished_at"] == end["at"]
    assert (done["started_at"], done["finished_at"]) == (ends[1]["started_at"], ends[1]["at"])
    assert done["claimed_at"] == claims[1]["at"]


def test_callback_for_a_job_that_is_not_external_or_not_running_is_409(
    live: LiveServer, db: Database, system: IntegrationSystem
) -> None:
    # No workers: the jobs stay where submission put them.
    noop = submit(live, {"targetObject": "1.NOOP"})
    answer = callback(callback_url(live, noop), {"status": "FINISHED"})
    assert answer.status_code == 409
    assert "NOOP job; only EXTERNAL jobs take callbacks" in answer.json()["error"]["message"]

    waiting = submit(live, ext(system))
    answer = callback(callback_url(live, waiting), {"status": "FINISHED"})
    assert answer.status_code == 409
    assert "WAITING_FOR_DISPATCH, not running" in answer.json()["error"]["message"]
    assert job(db, waiting)["status"] == "WAITING_FOR_DISPATCH"

    assert callback(callback_url(live, 10**12), {"status": "FINISHED"}).status_code == 404
    assert callback(callback_url(live, 10**20), {"status": "FINISHED"}).status_code == 404


# -- deadline, cancellation and notification failures ------------------------------------


def test_no_callback_in_time_fails_the_job(
    live: LiveServer,
    pool: WorkerPool,
    housekeeping: None,
    db: Database,
    system: IntegrationSystem,
) -> None:
    root = submit(live, chain_with_join(system, parameters={"timeoutSeconds": 0.5}))
    nodes = by_target(wait_for_chain(db, root))
    sap = nodes["sap.EXTERNAL"]
    assert sap["status"] == "FAILED"
    assert sap["message"] == "no callback within 0.5 s"
    assert sap["attempt"] == 1  # failed, never re-run
    assert system.received() == 1
    assert nodes["after.NOOP"]["status"] == "SKIPPED"
    assert nodes["cleanup.NOOP"]["status"] == "FINISHED"
    assert nodes["report.NOOP"]["status"] == "SKIPPED"
    late = callback(callback_url(live, sap["id"]), {"status": "FINISHED", "attempt": 1})
    assert late.status_code == 409
    assert "no callback within 0.5 s" in late.json()["error"]["message"]


def test_cancel_while_waiting_for_the_callback(
    live: LiveServer,
    pool: WorkerPool,
    housekeeping: None,
    db: Database,
    system: IntegrationSystem,
) -> None:
    root = submit(live, {**ext(system), "nextJobs": [{"targetObject": "after.NOOP"}]})
    waiting_for_callback(db, root)
    cancelled = requests.post(f"{live.url}/api/v1/jobs/{root}/cancel", headers=AUTH, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    nodes = by_target(wait_for_chain(db, root))
    assert nodes["sap.EXTERNAL"]["status"] == "CANCELLED"
    assert nodes["sap.EXTERNAL"]["message"] == "cancelled while waiting for its callback"
    assert nodes["after.NOOP"]["status"] == "CANCELLED"
    assert callback(callback_url(live, root), {"status": "FINISHED"}).status_code == 409


def test_notification_is_retried_after_a_500(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    system.failures_before_success = 2
    system.reply = {"status": "FINISHED"}
    job_id = submit(live, ext(system))
    assert wait_for_status(db, job_id, "FINISHED")
    assert system.received() == 3
    assert {n["attempt"] for n in system.notifications} == {1}  # one attempt, three tries
    assert job(db, job_id)["attempt"] == 1
    log = queries.get_log(db, job_id)
    assert log is not None
    assert "HTTP 500" in log["text"]


def test_notification_rejected_fails_the_job(
    live: LiveServer, pool: WorkerPool, db: Database, system: IntegrationSystem
) -> None:
    system.failures_before_success = 99  # answers 500 every time
    job_id = submit(live, ext(system))
    assert wait_for_status(db, job_id, "FAILED")
    assert system.received() == external_job.NOTIFY_TRIES
    assert job(db, job_id)["message"] == (
        f"notifying {system.url} failed after {external_job.NOTIFY_TRIES} tries: HTTP 500"
    )
    # Bad parameters never get this far: the type's schema refuses them at submission.
    for parameters, path in [
        ({"notifyUrl": "ftp://x"}, "parameters.notifyUrl"),
        ({"notifyUrl": system.url, "timeoutSeconds": -1}, "parameters.timeoutSeconds"),
    ]:
        body = {"targetObject": "EXTERNAL", "parameters": parameters}
        refused = requests.post(f"{live.url}/api/v1/jobs", json=body, headers=AUTH, timeout=30)
        assert refused.status_code == 400, refused.text
        assert list(refused.json()["error"]["details"]) == [path]


def test_public_url_is_the_callback_base(
    runtime: Runtime, db: Database, system: IntegrationSystem
) -> None:
    from app.web import create_app

    runtime.settings = replace(runtime.settings, public_url="https://jobchain.example.com/")
    with LiveServer(create_app(runtime=runtime)) as live:
        workers = WorkerPool(db, runtime.registry, runtime.settings).start()
        try:
            job_id = submit(live, ext(system))
            waiting_for_callback(db, job_id)
        finally:
            workers.stop(grace_seconds=5)
    url = system.last()["callbackUrl"]
    assert url == f"https://jobchain.example.com/api/v1/jobs/{job_id}/callback"


def test_forged_host_headers_do_not_redirect_callbacks(
    live: LiveServer, runtime: Runtime, db: Database, system: IntegrationSystem
) -> None:
    """Callbacks go to the service's own address, never to a request's Host header."""
    job_id = submit(live, ext(system))
    forged = {**AUTH, "Host": "evil.example"}
    assert requests.get(f"{live.url}/health", headers=forged, timeout=30).status_code == 200
    assert requests.get(f"{live.url}/api/v1/jobs", headers=forged, timeout=30).status_code == 200
    # Deliberately without a token: an anonymous caller is refused before anything is learned.
    anonymous = requests.post(
        f"{live.url}/api/v1/jobs", json=ext(system), headers={"Host": "evil.example"}, timeout=30
    )
    assert anonymous.status_code == 401
    workers = WorkerPool(db, runtime.registry, runtime.settings).start()
    try:
        waiting_for_callback(db, job_id)
    finally:
        workers.stop(grace_seconds=5)
    assert system.last()["callbackUrl"] == callback_url(live, job_id)


def test_openapi_documents_the_callback(live: LiveServer) -> None:
    spec = requests.get(f"{live.url}/openapi.json", headers=AUTH, timeout=30).json()
    post = spec["paths"]["/api/v1/jobs/{job_id}/callback"]["post"]
    assert {"200", "401", "403", "404", "409", "503"} <= set(post["responses"])
    submit_post = spec["paths"]["/api/v1/jobs"]["post"]
    assert {"200", "201", "422"} <= set(submit_post["responses"])
