"""The job lifecycle at the store level, on SQLite and PostgreSQL, without worker threads.

Each test drives :mod:`app.store.lifecycle` directly (claim, finish, cancel, retry, reap)
and checks statuses, messages and the event rows that every transition must write in the
same transaction as the status change.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from app.domain.outcome import RetryPolicy
from app.domain.statuses import TRANSITIONS, Status, allowed
from app.store import actions, claims, completion, queries, recovery, transitions
from app.store.claims import Claim
from app.store.completion import Outcome
from app.store.database import Database, now
from app.store.tables import job_events, jobs
from tests.runner.test_engine_chain import submit

LEASE = 30.0
OK = Outcome(failed=False, result={"ok": True})
BOOM = Outcome(failed=True, message="boom")
# A lease that is already over when it is granted: the reaper may take the job at once.
EXPIRED = -1.0

WFP = Status.WAITING_FOR_PARENT.value
WFD = Status.WAITING_FOR_DISPATCH.value
PROCESSING = Status.PROCESSING.value
FINISHED = Status.FINISHED.value
FAILED = Status.FAILED.value
CANCELLED = Status.CANCELLED.value
SKIPPED = Status.SKIPPED.value


# -- helpers ---------------------------------------------------------------------------


def node(target: str, *next_jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One ChainedJobInfo node: ``node("a.NOOP", node("b.NOOP"), executeOnError=True)``."""
    return {"targetObject": target, "nextJobs": list(next_jobs), **extra}


def ids_by_target(db: Database, root_id: int) -> dict[str, int]:
    tree = queries.get_tree(db, root_id)
    assert tree is not None
    out: dict[str, int] = {}
    stack = [tree]
    while stack:
        n = stack.pop()
        out[n["target_object"]] = n["id"]
        stack.extend(n["next_jobs"])
    return out


def job(db: Database, job_id: int) -> dict[str, Any]:
    row = queries.get_job(db, job_id)
    assert row is not None
    return row


def status(db: Database, job_id: int) -> str:
    return str(job(db, job_id)["status"])


def statuses(db: Database, ids: dict[str, int]) -> dict[str, str]:
    return {name: status(db, job_id) for name, job_id in ids.items()}


def history(db: Database, job_id: int) -> list[tuple[str | None, str, str]]:
    events = queries.get_events(db, job_id)
    assert events is not None
    return [(e["from_status"], e["to_status"], e["reason"]) for e in events]


def last_event(db: Database, job_id: int) -> dict[str, Any]:
    events = queries.get_events(db, job_id)
    assert events
    return events[-1]


def event_count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(job_events)).scalar_one())


def claim_job(db: Database, job_id: int, lease: float = LEASE, owner: str = "w1") -> Claim:
    """Claim the next due job and check it is ``job_id``."""
    claimed_now = claims.claim(db, owner, lease)
    assert [c.id for c in claimed_now] == [job_id]
    return claimed_now[0]


def make_due(db: Database, job_id: int) -> None:
    """Skip a retry backoff: move the job's run_after into the past."""
    db.write(lambda conn: conn.execute(update(jobs).where(jobs.c.id == job_id).values(run_after=0)))


def force_status(db: Database, job_id: int, to: Status) -> None:
    db.write(
        lambda conn: conn.execute(update(jobs).where(jobs.c.id == job_id).values(status=to.value))
    )


def assert_histories_consistent(db: Database) -> None:
    """Every job's events form an unbroken chain ending in its current status."""
    with db.read() as conn:
        current = dict(conn.execute(select(jobs.c.id, jobs.c.status)).all())
        rows = conn.execute(
            select(job_events.c.job_id, job_events.c.from_status, job_events.c.to_status).order_by(
                job_events.c.id
            )
        ).all()
    seen: dict[int, str] = {}
    for job_id, from_status, to_status in rows:
        assert from_status == seen.get(job_id), f"job {job_id}: broken event chain"
        seen[job_id] = to_status
    assert seen == current


# -- submission and claiming --------------------------------------------------------------


def test_submission_stores_the_whole_tree_at_once(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("c.NOOP")), node("b.NOOP")))
    ids = ids_by_target(db, root)
    assert statuses(db, ids) == {"1.NOOP": WFD, "a.NOOP": WFP, "b.NOOP": WFP, "c.NOOP": WFP}
    for name, job_id in ids.items():
        assert job(db, job_id)["root_id"] == root
        expected = WFD if name == "1.NOOP" else WFP
        assert history(db, job_id) == [(None, expected, "submit")]
        assert last_event(db, job_id)["attempt"] == 0
    assert_histories_consistent(db)


def test_claim_takes_only_due_dispatchable_jobs_and_writes_the_claim_event(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root, owner="worker-x")
    assert claim.attempt == 1
    assert claim.max_attempts == 1
    assert claim.job_type == "NOOP"
    assert claim.target_id == "1"
    row = job(db, root)
    assert row["status"] == PROCESSING
    assert row["lease_owner"] == "worker-x"
    assert row["lease_expires_at"] > now() + LEASE - 5
    assert row["attempt"] == 1
    assert history(db, root)[-1] == (WFD, PROCESSING, "claim")
    assert last_event(db, root)["attempt"] == 1
    # Neither the running root nor its waiting child can be claimed.
    assert claims.claim(db, "w2", LEASE, limit=10) == []
    assert status(db, child) == WFP


def test_claim_takes_oldest_first_and_respects_limit(db: Database) -> None:
    roots = [submit(db, node(f"{i}.NOOP")) for i in range(5)]
    first = claims.claim(db, "w", LEASE, limit=3)
    assert [c.id for c in first] == roots[:3]
    assert len({c.lease_token for c in first}) == 1  # one claim, one token
    rest = claims.claim(db, "w", LEASE, limit=3)
    assert [c.id for c in rest] == roots[3:]
    assert claims.claim(db, "w", LEASE, limit=3) == []


# -- finishing and releasing next jobs --------------------------------------------------


def test_finished_parent_releases_all_next_jobs_in_one_transaction(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("c.NOOP")), node("b.NOOP")))
    ids = ids_by_target(db, root)
    claim = claim_job(db, root)
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED
    assert statuses(db, ids) == {"1.NOOP": FINISHED, "a.NOOP": WFD, "b.NOOP": WFD, "c.NOOP": WFP}
    row = job(db, root)
    assert row["result"] == {"ok": True}
    assert row["lease_owner"] is None and row["lease_expires_at"] is None
    assert row["finished_at"] is not None
    assert history(db, root)[-1] == (PROCESSING, FINISHED, "finish")
    finish_at = last_event(db, root)["at"]
    for name in ("a.NOOP", "b.NOOP"):
        assert history(db, ids[name])[-1] == (WFP, WFD, "parent finished")
        assert last_event(db, ids[name])["at"] == finish_at
    # Both children are claimable now, in submission order.
    assert [c.id for c in claims.claim(db, "w", LEASE, limit=5)] == [
        ids["a.NOOP"],
        ids["b.NOOP"],
    ]
    assert_histories_consistent(db)


def test_failed_parent_starts_error_handlers_and_skips_the_rest(db: Database) -> None:
    root = submit(
        db,
        node(
            "1.NOOP",
            node("err.NOOP", node("after_err.NOOP"), executeOnError=True),
            node("a.NOOP", node("b.NOOP", node("deep_err.NOOP", executeOnError=True))),
        ),
    )
    ids = ids_by_target(db, root)
    claim = claim_job(db, root)
    assert completion.finish(db, root, claim.lease_token, BOOM) == Status.FAILED
    assert statuses(db, ids) == {
        "1.NOOP": FAILED,
        "err.NOOP": WFD,
        "after_err.NOOP": WFP,
        "a.NOOP": SKIPPED,
        "b.NOOP": SKIPPED,
        # Its own parent never failed: it was skipped with the branch.
        "deep_err.NOOP": SKIPPED,
    }
    assert job(db, root)["message"] == "boom"
    assert history(db, root)[-1] == (PROCESSING, FAILED, "fail")
    assert history(db, ids["err.NOOP"])[-1] == (WFP, WFD, "parent failed")
    for name in ("a.NOOP", "b.NOOP", "deep_err.NOOP"):
        row = job(db, ids[name])
        assert row["message"] == f"skipped: job {root} (1.NOOP) failed"
        assert row["blocked_by"] == root
        assert history(db, ids[name])[-1] == (WFP, SKIPPED, "skip")
    assert_histories_consistent(db)


def test_finish_with_a_stale_or_wrong_token_changes_nothing(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    before = event_count(db)
    assert completion.finish(db, root, "not-the-token", OK) is None
    assert not claims.heartbeat(db, root, "not-the-token", LEASE).still_held
    assert status(db, root) == PROCESSING and status(db, child) == WFP
    assert event_count(db) == before
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED
    after = event_count(db)
    # A second finish with the (now spent) token is a no-op too.
    assert completion.finish(db, root, claim.lease_token, BOOM) is None
    assert claims.heartbeat(db, root, claim.lease_token, LEASE) == claims.Heartbeat(
        still_held=False, cancel_requested=False
    )
    assert status(db, root) == FINISHED and status(db, child) == WFD
    assert event_count(db) == after
    # Finishing a job that was never claimed, or does not exist, is a no-op as well.
    assert completion.finish(db, child, claim.lease_token, OK) is None
    assert completion.finish(db, 999_999, claim.lease_token, OK) is None


def test_heartbeat_renews_the_lease_and_stores_progress_and_log(db: Database) -> None:
    root = submit(db, node("1.NOOP"))
    claim = claim_job(db, root, lease=EXPIRED)
    beat = claims.heartbeat(
        db, root, claim.lease_token, LEASE, progress=42.0, message="half", log="line 1\n"
    )
    assert beat == claims.Heartbeat(still_held=True, cancel_requested=False)
    claims.heartbeat(db, root, claim.lease_token, LEASE, log="line 2\n")
    row = job(db, root)
    assert row["progress"] == 42.0
    assert row["message"] == "half"
    assert row["lease_expires_at"] > now() + LEASE - 5
    log = queries.get_log(db, root)
    assert log is not None and log["lines"] == ["line 1", "line 2"]
    # The renewed lease is no longer expired: the reaper leaves the job alone.
    assert recovery.reap_expired_leases(db) == 0
    assert status(db, root) == PROCESSING
    # Heartbeats are not transitions: only submit and claim are in the history.
    assert [h[2] for h in history(db, root)] == ["submit", "claim"]


def test_a_failed_event_write_rolls_back_the_status_change(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    before = event_count(db)

    # Every event row is refused by the database itself: on PostgreSQL the events are
    # written in the same statement as their status change, on SQLite in the next one.
    if db.is_sqlite:
        broken = (
            "CREATE TRIGGER no_events BEFORE INSERT ON job_events"
            " BEGIN SELECT RAISE(ABORT, 'event table unavailable'); END"
        )
        repaired = "DROP TRIGGER no_events"
    else:
        broken = "ALTER TABLE job_events ADD CONSTRAINT no_events CHECK (false) NOT VALID"
        repaired = "ALTER TABLE job_events DROP CONSTRAINT no_events"
    with db.engine.begin() as conn:
        conn.exec_driver_sql(broken)
    with pytest.raises(DBAPIError, match=r"no_events|event table unavailable"):
        completion.finish(db, root, claim.lease_token, OK)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(repaired)
    assert status(db, root) == PROCESSING
    assert status(db, child) == WFP
    assert event_count(db) == before
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED


# -- the transition table itself ------------------------------------------------------------


def test_guarded_updates_follow_the_transition_table(db: Database) -> None:
    """Every (transition, current status) pair: legal ones move and log, others do nothing."""
    root = submit(db, node("1.NOOP"))
    for transition, (_, to) in TRANSITIONS.items():
        for current in Status:
            force_status(db, root, current)
            before = event_count(db)
            change = partial(
                transitions.apply, transition=transition, condition=jobs.c.id == root, at=now()
            )
            moved = db.write(change)
            legal = allowed(current, transition)
            assert len(moved) == (1 if legal else 0), (transition, current)
            assert status(db, root) == (to.value if legal else current.value)
            assert event_count(db) == before + (1 if legal else 0)
            if legal:
                assert history(db, root)[-1] == (current.value, to.value, str(transition))
            else:
                with pytest.raises(ValueError):
                    db.write(partial(change, only_from=current))


# -- cancel ------------------------------------------------------------------------------


def test_cancel_waiting_root_cancels_the_whole_tree(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("c.NOOP")), node("b.NOOP")))
    ids = ids_by_target(db, root)
    assert actions.cancel(db, root) == Status.CANCELLED
    assert set(statuses(db, ids).values()) == {CANCELLED}
    assert job(db, root)["message"] == "cancelled by request"
    assert job(db, root)["blocked_by"] is None
    assert history(db, root)[-1] == (WFD, CANCELLED, "cancel")
    for name in ("a.NOOP", "b.NOOP", "c.NOOP"):
        row = job(db, ids[name])
        assert row["message"] == f"cancelled: job {root} was cancelled"
        assert row["blocked_by"] == root
        assert history(db, ids[name])[-1] == (WFP, CANCELLED, "cancel")
    assert claims.claim(db, "w", LEASE, limit=10) == []
    assert_histories_consistent(db)


def test_cancel_mid_chain_leaves_the_rest_of_the_tree_running(db: Database) -> None:
    root = submit(
        db, node("1.NOOP", node("a.NOOP", node("b.NOOP", node("c.NOOP"))), node("d.NOOP"))
    )
    ids = ids_by_target(db, root)
    assert actions.cancel(db, ids["a.NOOP"]) == Status.CANCELLED
    assert statuses(db, ids) == {
        "1.NOOP": WFD,
        "a.NOOP": CANCELLED,
        "b.NOOP": CANCELLED,
        "c.NOOP": CANCELLED,
        "d.NOOP": WFP,
    }
    assert job(db, ids["c.NOOP"])["blocked_by"] == ids["a.NOOP"]
    cancelled_events = len(history(db, ids["a.NOOP"]))
    claim = claim_job(db, root)
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED
    assert statuses(db, ids)["d.NOOP"] == WFD
    assert statuses(db, ids)["a.NOOP"] == CANCELLED
    assert len(history(db, ids["a.NOOP"])) == cancelled_events
    assert_histories_consistent(db)


def test_cancel_dispatchable_job_in_retry_backoff(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP"), maxAttempts=3))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    completion.finish(db, root, claim.lease_token, BOOM, RetryPolicy(60))
    assert status(db, root) == WFD
    assert actions.cancel(db, root) == Status.CANCELLED
    assert status(db, child) == CANCELLED
    make_due(db, root)
    assert claims.claim(db, "w", LEASE) == []


def test_cancel_running_job_requests_a_stop_then_ends_cancelled(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("b.NOOP")), maxAttempts=3))
    ids = ids_by_target(db, root)
    claim = claim_job(db, root)
    assert actions.cancel(db, root) == Status.PROCESSING
    row = job(db, root)
    assert row["status"] == PROCESSING and row["cancel_requested"] is True
    assert history(db, root)[-1] == (PROCESSING, PROCESSING, "cancel requested")
    # Its not-yet-started descendants are cancelled at once.
    assert statuses(db, ids) == {"1.NOOP": PROCESSING, "a.NOOP": CANCELLED, "b.NOOP": CANCELLED}
    # The worker hears of it with its next heartbeat.
    beat = claims.heartbeat(db, root, claim.lease_token, LEASE)
    assert beat == claims.Heartbeat(still_held=True, cancel_requested=True)
    # Cancelling again is harmless and writes nothing.
    before = event_count(db)
    assert actions.cancel(db, root) == Status.PROCESSING
    assert event_count(db) == before
    # Even a failure with attempts left ends CANCELLED: no automatic retry after a cancel.
    assert completion.finish(db, root, claim.lease_token, BOOM) == Status.CANCELLED
    row = job(db, root)
    assert row["message"] == "cancelled while running"
    assert row["lease_owner"] is None
    assert history(db, root)[-1] == (PROCESSING, CANCELLED, "cancel")
    assert statuses(db, ids) == {"1.NOOP": CANCELLED, "a.NOOP": CANCELLED, "b.NOOP": CANCELLED}
    assert claims.claim(db, "w", LEASE, limit=10) == []
    assert_histories_consistent(db)


def test_cancel_running_job_that_then_succeeds_still_ends_cancelled(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    actions.cancel(db, root)
    assert completion.finish(db, root, claim.lease_token, OK) == Status.CANCELLED
    assert status(db, child) == CANCELLED


@pytest.mark.parametrize("end", [FINISHED, FAILED, CANCELLED, SKIPPED])
def test_cancel_of_an_ended_job_is_a_conflict(db: Database, end: str) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    if end == SKIPPED:
        completion.finish(db, root, claim.lease_token, BOOM)
        target = child
    else:
        target = root
        if end == CANCELLED:
            actions.cancel(db, root)
        completion.finish(db, root, claim.lease_token, BOOM if end == FAILED else OK)
    assert status(db, target) == end
    before = event_count(db)
    with pytest.raises(actions.Conflict):
        actions.cancel(db, target)
    assert status(db, target) == end
    assert event_count(db) == before


def test_cancel_and_retry_of_a_missing_job_is_not_found(db: Database) -> None:
    with pytest.raises(actions.NotFound):
        actions.cancel(db, 424242)
    with pytest.raises(actions.NotFound):
        actions.retry(db, 424242)


# -- retry -------------------------------------------------------------------------------


@pytest.mark.parametrize("current", [WFP, WFD, PROCESSING, FINISHED, SKIPPED])
def test_retry_of_a_job_that_did_not_fail_or_get_cancelled_is_a_conflict(
    db: Database, current: str
) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    target = child if current in {WFP, SKIPPED} else root
    if current in {PROCESSING, FINISHED, SKIPPED}:
        claim = claim_job(db, root)
        if current != PROCESSING:
            completion.finish(db, root, claim.lease_token, OK if current == FINISHED else BOOM)
    assert status(db, target) == current
    before = event_count(db)
    with pytest.raises(actions.Conflict):
        actions.retry(db, target)
    assert status(db, target) == current
    assert event_count(db) == before


def test_retry_mid_chain_brings_back_exactly_what_the_job_blocked(db: Database) -> None:
    root = submit(
        db,
        node(
            "1.NOOP",
            node(
                "a.NOOP",
                node("b.NOOP", node("c.NOOP")),
                node("handler.NOOP", executeOnError=True),
                node("e.NOOP", node("f.NOOP")),
            ),
        ),
    )
    ids = ids_by_target(db, root)
    a = ids["a.NOOP"]
    # e is cancelled by the user on its own (its child f with it) before a even starts.
    assert actions.cancel(db, ids["e.NOOP"]) == Status.CANCELLED
    completion.finish(db, root, claim_job(db, root).lease_token, OK)
    claim = claim_job(db, a)
    assert completion.finish(db, a, claim.lease_token, BOOM) == Status.FAILED
    assert statuses(db, ids) == {
        "1.NOOP": FINISHED,
        "a.NOOP": FAILED,
        "b.NOOP": SKIPPED,
        "c.NOOP": SKIPPED,
        "handler.NOOP": WFD,
        "e.NOOP": CANCELLED,
        "f.NOOP": CANCELLED,
    }

    assert actions.retry(db, a) == Status.WAITING_FOR_DISPATCH
    assert statuses(db, ids) == {
        "1.NOOP": FINISHED,
        "a.NOOP": WFD,
        "b.NOOP": WFP,
        "c.NOOP": WFP,
        "handler.NOOP": WFD,
        "e.NOOP": CANCELLED,
        "f.NOOP": CANCELLED,
    }
    row = job(db, a)
    assert row["attempt"] == 1 and row["attempt_floor"] == 1
    assert row["message"] is None and row["finished_at"] is None
    assert history(db, a)[-1] == (FAILED, WFD, "retry")
    for name in ("b.NOOP", "c.NOOP"):
        revived = job(db, ids[name])
        assert revived["blocked_by"] is None and revived["message"] is None
        assert history(db, ids[name])[-2:] == [
            (WFP, SKIPPED, "skip"),
            (SKIPPED, WFP, "blocker retried"),
        ]
    assert job(db, ids["f.NOOP"])["blocked_by"] == ids["e.NOOP"]

    # The chain goes on: the handler (released by the failure) and then a's second attempt.
    completion.finish(db, ids["handler.NOOP"], claim_job(db, ids["handler.NOOP"]).lease_token, OK)
    claim = claim_job(db, a)
    assert claim.attempt == 2
    assert completion.finish(db, a, claim.lease_token, OK) == Status.FINISHED
    assert status(db, ids["b.NOOP"]) == WFD
    assert status(db, ids["c.NOOP"]) == WFP
    assert status(db, ids["e.NOOP"]) == CANCELLED
    completion.finish(db, ids["b.NOOP"], claim_job(db, ids["b.NOOP"]).lease_token, OK)
    completion.finish(db, ids["c.NOOP"], claim_job(db, ids["c.NOOP"]).lease_token, OK)
    assert statuses(db, ids) == {
        "1.NOOP": FINISHED,
        "a.NOOP": FINISHED,
        "b.NOOP": FINISHED,
        "c.NOOP": FINISHED,
        "handler.NOOP": FINISHED,
        "e.NOOP": CANCELLED,
        "f.NOOP": CANCELLED,
    }
    assert_histories_consistent(db)


def test_retry_of_a_cancelled_root_revives_its_cancelled_subtree(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("b.NOOP"))))
    ids = ids_by_target(db, root)
    actions.cancel(db, root)
    assert actions.retry(db, root) == Status.WAITING_FOR_DISPATCH
    assert statuses(db, ids) == {"1.NOOP": WFD, "a.NOOP": WFP, "b.NOOP": WFP}
    assert history(db, root)[-1] == (CANCELLED, WFD, "retry")
    assert history(db, ids["b.NOOP"])[-1] == (CANCELLED, WFP, "blocker retried")
    for target in ("1.NOOP", "a.NOOP", "b.NOOP"):
        claim = claim_job(db, ids[target])
        assert completion.finish(db, ids[target], claim.lease_token, OK) == Status.FINISHED
    assert_histories_consistent(db)


def test_retry_of_a_job_cancelled_while_running(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP")))
    child = ids_by_target(db, root)["a.NOOP"]
    claim = claim_job(db, root)
    actions.cancel(db, root)
    completion.finish(db, root, claim.lease_token, OK)
    assert status(db, root) == CANCELLED
    actions.retry(db, root)
    row = job(db, root)
    assert row["status"] == WFD and row["cancel_requested"] is False
    assert status(db, child) == WFP
    claim = claim_job(db, root)
    assert claim.attempt == 2
    assert not claims.heartbeat(db, root, claim.lease_token, LEASE).cancel_requested
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED
    assert status(db, child) == WFD


def test_retry_of_a_job_cancelled_before_its_parent_ended_waits_for_the_parent(
    db: Database,
) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP", node("b.NOOP"))))
    ids = ids_by_target(db, root)
    claim = claim_job(db, root)
    actions.cancel(db, ids["a.NOOP"])
    assert actions.retry(db, ids["a.NOOP"]) == Status.WAITING_FOR_PARENT
    # Its parent is still running: the retried job must not run before the parent ends.
    assert statuses(db, ids) == {"1.NOOP": PROCESSING, "a.NOOP": WFP, "b.NOOP": WFP}
    assert history(db, ids["a.NOOP"])[-1] == (CANCELLED, WFP, "retry")
    assert claims.claim(db, "w", LEASE, limit=10) == []
    completion.finish(db, root, claim.lease_token, OK)
    assert statuses(db, ids) == {"1.NOOP": FINISHED, "a.NOOP": WFD, "b.NOOP": WFP}
    assert_histories_consistent(db)


# -- automatic retries ----------------------------------------------------------------------


def test_retry_policy_backs_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_seconds=0.05, max_seconds=0.2)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 10)] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert RetryPolicy(1.0, 600.0).delay(0) == 1.0


def test_automatic_retries_back_off_then_fail_then_user_retry_gives_a_fresh_budget(
    db: Database,
) -> None:
    policy = RetryPolicy(base_seconds=10.0, max_seconds=600.0)
    root = submit(db, node("1.NOOP", node("a.NOOP"), maxAttempts=3))
    child = ids_by_target(db, root)["a.NOOP"]

    for attempt, delay in ((1, 10), (2, 20)):
        claim = claim_job(db, root)
        assert (claim.attempt, claim.max_attempts) == (attempt, 3)
        t = now()
        assert (
            completion.finish(db, root, claim.lease_token, BOOM, policy)
            == Status.WAITING_FOR_DISPATCH
        )
        row = job(db, root)
        assert row["attempt"] == attempt
        assert t + delay - 1 < row["run_after"] < now() + delay + 1
        assert row["message"] == f"boom (attempt {attempt} failed; retry in {delay} s)"
        assert row["lease_owner"] is None and row["finished_at"] is None
        assert history(db, root)[-1] == (PROCESSING, WFD, "automatic retry")
        assert last_event(db, root)["attempt"] == attempt
        assert status(db, child) == WFP
        # Not due yet.
        assert claims.claim(db, "w", LEASE) == []
        make_due(db, root)

    claim = claim_job(db, root)
    assert claim.attempt == 3
    assert completion.finish(db, root, claim.lease_token, BOOM, policy) == Status.FAILED
    assert job(db, root)["message"] == "boom"
    assert status(db, child) == SKIPPED

    actions.retry(db, root)
    assert status(db, child) == WFP
    claim = claim_job(db, root)
    assert (claim.attempt, claim.max_attempts) == (4, 6)
    # attempt 4 is the first of the fresh budget: retried again, with the first delay.
    assert (
        completion.finish(db, root, claim.lease_token, BOOM, policy) == Status.WAITING_FOR_DISPATCH
    )
    assert job(db, root)["message"] == "boom (attempt 4 failed; retry in 10 s)"
    make_due(db, root)
    claim = claim_job(db, root)
    assert completion.finish(db, root, claim.lease_token, OK, policy) == Status.FINISHED
    assert job(db, root)["attempt"] == 5
    assert status(db, child) == WFD
    assert [h[2] for h in history(db, root)].count("automatic retry") == 3
    assert_histories_consistent(db)


# -- the reaper ---------------------------------------------------------------------------


def test_reaper_reruns_an_expired_job_with_attempts_left(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP"), maxAttempts=2))
    child = ids_by_target(db, root)["a.NOOP"]
    stale = claim_job(db, root, lease=EXPIRED, owner="gone")
    assert recovery.reap_expired_leases(db) == 1
    row = job(db, root)
    assert row["status"] == WFD
    assert row["lease_owner"] is None and row["lease_expires_at"] is None
    assert row["message"] == "worker gone vanished; re-running"
    assert history(db, root)[-1] == (PROCESSING, WFD, "lease expired, re-run")
    assert status(db, child) == WFP
    # The vanished worker's late writes are fenced off.
    before = event_count(db)
    assert completion.finish(db, root, stale.lease_token, OK) is None
    assert not claims.heartbeat(db, root, stale.lease_token, LEASE).still_held
    assert event_count(db) == before
    assert status(db, root) == WFD
    claim = claim_job(db, root)
    assert claim.attempt == 2
    assert completion.finish(db, root, stale.lease_token, OK) is None
    assert completion.finish(db, root, claim.lease_token, OK) == Status.FINISHED
    assert status(db, child) == WFD
    assert recovery.reap_expired_leases(db) == 0
    assert_histories_consistent(db)


def test_reaper_fails_an_expired_job_without_attempts_left_and_the_chain_goes_on(
    db: Database,
) -> None:
    root = submit(
        db, node("1.NOOP", node("err.NOOP", executeOnError=True), node("a.NOOP", node("b.NOOP")))
    )
    ids = ids_by_target(db, root)
    stale = claim_job(db, root, lease=EXPIRED)
    assert recovery.reap_expired_leases(db) == 1
    assert statuses(db, ids) == {
        "1.NOOP": FAILED,
        "err.NOOP": WFD,
        "a.NOOP": SKIPPED,
        "b.NOOP": SKIPPED,
    }
    assert job(db, root)["message"] == "interrupted"
    assert job(db, root)["finished_at"] is not None
    assert history(db, root)[-1] == (PROCESSING, FAILED, "lease expired, interrupted")
    assert job(db, ids["b.NOOP"])["message"] == f"skipped: job {root} (1.NOOP) failed"
    assert completion.finish(db, root, stale.lease_token, OK) is None
    assert status(db, root) == FAILED
    # Interrupted is an ordinary failure: a user retry runs it again.
    actions.retry(db, root)
    assert statuses(db, ids)["a.NOOP"] == WFP
    assert_histories_consistent(db)


def test_reaper_cancels_an_expired_job_whose_cancel_was_requested(db: Database) -> None:
    root = submit(db, node("1.NOOP", node("a.NOOP"), maxAttempts=5))
    child = ids_by_target(db, root)["a.NOOP"]
    claim_job(db, root, lease=EXPIRED)
    actions.cancel(db, root)
    assert recovery.reap_expired_leases(db) == 1
    assert status(db, root) == CANCELLED
    assert job(db, root)["message"] == "cancelled (worker vanished)"
    assert history(db, root)[-1] == (PROCESSING, CANCELLED, "cancel")
    assert status(db, child) == CANCELLED
    assert claims.claim(db, "w", LEASE, limit=10) == []
    assert_histories_consistent(db)


def test_reaper_leaves_live_leases_alone_and_respects_its_limit(db: Database) -> None:
    live = submit(db, node("live.NOOP"))
    claim_job(db, live)
    dead = [submit(db, node(f"{i}.NOOP", maxAttempts=2)) for i in range(3)]
    claimed_now = claims.claim(db, "w", EXPIRED, limit=3)
    assert [c.id for c in claimed_now] == dead
    assert recovery.reap_expired_leases(db, limit=2) == 2
    assert recovery.reap_expired_leases(db, limit=2) == 1
    assert recovery.reap_expired_leases(db) == 0
    assert status(db, live) == PROCESSING
    assert all(status(db, d) == WFD for d in dead)
