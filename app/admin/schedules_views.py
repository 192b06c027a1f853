"""The schedules page: next fire time, the last chains started, pause and resume."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, url_for

from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.api.shared import MAX_ID
from app.runner.schedule_loop import next_fire_after
from app.store import schedules
from app.store.database import now


@admin.get("/schedules")
def schedule_list() -> Any:
    return page("admin/schedules.html", schedules=schedules.list_schedules(runtime().db))


@admin.post("/schedules/<int:schedule_id>/pause")
def pause(schedule_id: int) -> Any:
    return _set_enabled(schedule_id, False)


@admin.post("/schedules/<int:schedule_id>/resume")
def resume(schedule_id: int) -> Any:
    return _set_enabled(schedule_id, True)


def _set_enabled(schedule_id: int, enabled: bool) -> Any:
    db = runtime().db
    found = schedule_id <= MAX_ID and schedules.update_schedule(
        db, schedule_id, {"enabled": enabled}, next_fire_after(now())
    )
    if not found:
        abort(404, f"no schedule {schedule_id}")
    flash(f"Schedule {schedule_id} {'resumed' if enabled else 'paused'}.", "ok")
    return redirect(url_for("admin.schedule_list", _anchor=f"schedule-{schedule_id}"), 303)
