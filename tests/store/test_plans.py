"""The hot path's statements find their rows by key on PostgreSQL, whatever its statistics.

A young table has no planner statistics: PostgreSQL then prices "every row of this status"
like one row, and a status guard it can use as an index condition turned a chain's hop into
a scan of every waiting link (O(depth) per hop) and a claim into a scan of every due job.
These tests run the real statements under ``EXPLAIN ANALYZE`` on such a table, with plans
for the values and the generic plan a prepared statement keeps, and count the rows the plan
looked at and threw away.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql

from app.domain.payload import JobSpec
from app.domain.statuses import Status, Transition
from app.store import claims, completion, firing, hop
from app.store.database import Database
from app.store.guards import FoundBy, guard
from app.store.schema import upgrade
from app.store.submission import submit
from tests.conftest import throwaway_postgres
from tests.store import test_joins as join_tests

CHAIN = 300
FLAT = 200


def _sql(clause: Any) -> str:
    return str(clause.compile(dialect=postgresql.dialect()))


def test_a_guard_is_written_for_how_the_rows_are_found() -> None:
    assert _sql(guard(Transition.FINISH)) == "jobs.status = 'PROCESSING'"
    # Found by key: the same test, which no index matches (the key's index finds the rows).
    assert _sql(guard(Transition.FINISH, found_by=FoundBy.KEY)) == (
        "(jobs.status = 'PROCESSING') IS true"
    )
    several = _sql(guard(Transition.USER_RETRY))
    assert several.startswith("jobs.status IN (") and "'FAILED'" in several


def test_a_claim_is_guarded_once_by_its_lock() -> None:
    claim_sql = _sql(claims._CLAIM_DUE.combined)
    assert claim_sql.count("jobs.status = 'WAITING_FOR_DISPATCH'") == 1  # the locking select
    assert "FOR UPDATE SKIP LOCKED" in claim_sql


@pytest.fixture
def young_db() -> Iterator[Database]:
    """A PostgreSQL database never analyzed: a chain waiting, flat jobs due."""
    for url in throwaway_postgres("jobchain_plans"):
        db = Database(url, pool_size=2, listen_notify=False)
        upgrade(db)
        root = link = JobSpec("t", "noop", None)
        for _ in range(CHAIN - 1):
            link.next_jobs.append(JobSpec("t", "noop", None))
            link = link.next_jobs[0]
        submit(db, root)
        yield db
        db.dispose()


def _wasted_rows(plan: dict[str, Any]) -> int:
    """Rows the plan read and dropped, over all its nodes."""
    return sum(_wasted_by_node(plan))


def _wasted_by_node(plan: dict[str, Any]) -> list[int]:
    own = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Join Filter", 0)
    return [own] + [n for child in plan.get("Plans", []) for n in _wasted_by_node(child)]


def _explain(conn: Connection, statement: Any, params: dict[str, Any]) -> dict[str, Any]:
    expanded = statement.compile(dialect=conn.dialect).construct_expanded_state(params)
    values = {k: getattr(v, "value", v) for k, v in expanded.parameters.items()}
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + expanded.statement
    [[document]] = conn.exec_driver_sql(sql, values).all()
    parsed = document if isinstance(document, list) else json.loads(document)
    plan: dict[str, Any] = parsed[0]["Plan"]
    return plan


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_a_hop_and_a_claim_read_only_their_rows(young_db: Database, plan_cache_mode: str) -> None:
    # Walk half the chain, then add due jobs: the table holds every kind of row.
    for _ in range(CHAIN // 2):
        [held] = claims.claim(young_db, "w", 30.0)
        assert completion.finish(young_db, held.id, held.lease_token, _ran()) == Status.FINISHED
    for _ in range(FLAT):
        submit(young_db, JobSpec("t", "noop", None))
    [held] = claims.claim(young_db, "w", 30.0)
    with young_db.engine.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL"
            " FROM pg_stat_user_tables WHERE relname = 'jobs'"
        ).scalar(), "the table must be young for this test"
        conn.exec_driver_sql(f"SET plan_cache_mode = {plan_cache_mode}")
        hop_params = {
            **completion._finish_params(held.id, _done(held), 1.0, 2.0, 3.0),
            "at": 3.0,
        }
        plan = _explain(conn, hop.FINISH_AND_RELEASE, hop_params)
        assert _wasted_rows(plan) == 0, json.dumps(plan, indent=1)
        due = {"now": time.time(), "limit": 16, "token": "t", "owner": "o", "expires": 9e9}
        plan = _explain(conn, claims._CLAIM_DUE.combined, due)
        # The due rows come in claim order from their index; each is updated by its id.
        assert _wasted_rows(plan) == 0, json.dumps(plan, indent=1)
        conn.rollback()
        # The hop that also claims: the due jobs, then the link's child by its parent. Two
        # lookups by parent drop their one row: the release of the next jobs not handed
        # over reads the handed one, the check for a JOIN node below it its own next link.
        # A scan would drop hundreds.
        plan = _explain(conn, hop.FINISH_AND_HAND_OFF, {**hop_params, **due, "limit": FLAT + 1})
        assert sorted(_wasted_by_node(plan))[-3:] == [0, 1, 1], json.dumps(plan, indent=1)
        conn.rollback()


def test_a_parents_join_node_is_claimed_by_its_parent(young_db: Database) -> None:
    """The claim of the JOIN node below a job just recorded looks it up by its parent, not
    among every due job (200 flat jobs and 39 parents wait)."""
    parent = _a_fan_in_parent(young_db)
    with young_db.engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        hop_params = {**completion._finish_params(parent.id, _done(parent), 1.0, 2.0, 3.0)}
        conn.execute(hop.FINISH_AND_RELEASE, {**hop_params, "at": 3.0})  # its node is due
        nodes = {"now": time.time(), "limit": 16, "token": "t", "owner": "o", "expires": 9e9}
        plan = _explain(conn, claims._CLAIM_DUE_NODES.combined, {**nodes, "parents": [parent.id]})
        assert plan["Actual Rows"] == 1
        assert _wasted_rows(plan) == 0, json.dumps(plan, indent=1)
        conn.rollback()


def _a_fan_in_parent(young_db: Database) -> claims.Claim:
    """A fan-in of 40 parents started, 200 flat jobs due: one parent, claimed."""
    join_tests.submit(young_db, join_tests.fan_in([f"P{i}" for i in range(40)]))
    _, root = claims.claim(young_db, "w", 30.0, limit=2)  # the chain's root, the fan-in's
    assert completion.finish(young_db, root.id, root.lease_token, _ran()) == Status.FINISHED
    for _ in range(FLAT):
        submit(young_db, JobSpec("t", "noop", None))
    [parent] = claims.claim(young_db, "w", 30.0)
    return parent


def _ran() -> completion.Outcome:
    return completion.Outcome(failed=False, started_at=1.0, finished_at=2.0)


def _done(held: claims.Claim) -> completion.Done:
    return completion.Done(held.id, held.lease_token, _ran())


def test_a_firing_reads_only_its_rows(young_db: Database) -> None:
    """The statement that decides a join and hands its next job over finds the join by
    key and the next jobs by their parent, with the generic plan it keeps (firing.py)."""
    join_tests.submit(young_db, join_tests.fan_in([f"P{i}" for i in range(40)]))
    for _ in range(FLAT):
        submit(young_db, JobSpec("t", "noop", None))
    with young_db.engine.connect() as conn:
        join_id = conn.exec_driver_sql("SELECT id FROM joins").scalar()
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        params = {
            "b_join": join_id,
            "counts": json.dumps({"FINISHED": 40}),  # as the column's processor would send it
            "b_state": "FIRED",
            "b_at": 3.0,
            "b_by": None,
            "at": 3.0,
            **{"token": "t", "owner": "o", "expires": 9e9, "now": time.time(), "limit": 1},
        }
        plan = _explain(conn, firing._FIRE_AND_HAND_OFF, params)
        # The handed job's release and the check for a JOIN node below it read one row each.
        assert max(_wasted_by_node(plan)) <= 1, json.dumps(plan, indent=1)
        conn.rollback()


def test_a_hop_with_a_join_node_below_reads_only_its_rows(young_db: Database) -> None:
    """The hop that also locks the node's join and writes its arrival row (39 parents and
    200 flat jobs wait; generic plan)."""
    parent = _a_fan_in_parent(young_db)
    with young_db.engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        params = {
            **completion._finish_params(parent.id, _done(parent), 1.0, 2.0, 3.0),
            "at": 3.0,
            **{"token": "t", "owner": "o", "expires": 9e9, "now": time.time(), "limit": 0},
        }
        plan = _explain(conn, hop.finish_hand_off_and_arrive(), params)
        # Lookups by parent drop the one row they read (the handed node, read again by
        # the release of the rest): a scan would drop hundreds.
        assert max(_wasted_by_node(plan)) <= 1, json.dumps(plan, indent=1)
        conn.rollback()
