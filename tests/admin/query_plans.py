"""Reading the console's queries: every statement a page runs, and its SQLite plan.

The console's tests require that no page scans a whole table; ``bench/console.py`` uses the
same helpers to time the pages on a million jobs and print their plans.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from app.store.tables import metadata


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Collect every (SQL, parameters) run on ``engine`` inside the block."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append((sql, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def sqlite_plan(engine: Engine, sql: str, params: Any) -> list[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
    return [str(row[-1]) for row in rows]


# A bare SCAN of a table (no index), or sorting a whole result: what must never happen.
_FULL_SCAN = re.compile(r"^SCAN (\w+)$")


def unindexed(plan: list[str], sql: str) -> list[str]:
    """The plan lines that read a table without an index. Walking the primary key in order
    under a LIMIT (newest first) is a bounded index walk, not a scan, and is allowed."""
    bad = []
    newest_first = "ORDER BY" in sql and "LIMIT" in sql and "DESC" in sql
    for line in plan:
        if "USE TEMP B-TREE FOR ORDER BY" in line and "LIMIT" in sql:
            bad.append(line)
        match = _FULL_SCAN.match(line)  # "SCAN anon_1" reads a bounded subquery: fine
        if match and match.group(1) in metadata.tables and not newest_first:
            bad.append(line)
    return bad


def login(client: FlaskClient, token: str) -> None:
    page = client.get("/admin/login").text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    csrf = found.group(1) if found else ""
    answer = client.post("/admin/login", data={"token": token, "csrf_token": csrf})
    if answer.status_code != 303:
        raise SystemExit(f"login failed: {answer.status_code}")
