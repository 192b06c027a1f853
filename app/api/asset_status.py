"""Assets as the API shows them: each row with its automation status (MISSING, STALE with
causes, FRESH), data version, lag against its policy and hold; and the list's filters."""

from __future__ import annotations

import time
from typing import Any

from flask import request

from app.api.errors import ApiError
from app.api.shared import runtime
from app.store import automation_reads

STATUSES = ("MISSING", "STALE", "FRESH")


def with_status(model_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (from ``graphs.list_assets``) with their status, after recording the
    refreshes that ended since the last tick."""
    rt = runtime()
    automation_reads.settle_now(rt.db, model_id, rt.settings.automation_max_failures)
    automation_reads.annotate(rt.db, model_id, rows, time.time())
    return rows


def filtered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``?status=MISSING|STALE|FRESH`` and ``?late=true|false``."""
    status = request.args.get("status")
    late = request.args.get("late")
    problems: dict[str, list[str]] = {}
    if status is not None and status not in STATUSES:
        problems["status"] = [f"must be one of: {', '.join(STATUSES)}"]
    if late is not None and late not in ("true", "false"):
        problems["late"] = ["must be true or false"]
    if problems:
        raise ApiError(400, "invalid_query", "invalid query", problems)
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    if late is not None:
        rows = [r for r in rows if r["late"] == (late == "true")]
    return rows


def stored_fields(data: dict[str, Any]) -> dict[str, Any]:
    """API field names -> column names, the job unwrapped from its envelope."""
    from app.domain.payload import unwrap

    if "codeVersion" in data:
        data["code_version"] = data.pop("codeVersion")
    if data.get("job") is not None:
        data["job"] = unwrap(data["job"])
    return data
