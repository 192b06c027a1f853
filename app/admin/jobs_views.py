"""The jobs list, one job's page and the actions on a job (cancel, retry, re-run)."""

from __future__ import annotations

from typing import Any

from flask import abort, g, redirect, request, url_for

from app.admin import filters, timeline
from app.admin.access import flash
from app.admin.blueprint import admin, page, runtime
from app.admin.rerun import NothingToRerun, rerun_from
from app.api.shared import MAX_ID
from app.domain.history import status_history
from app.domain.payload import PayloadError
from app.domain.statuses import CANCELLABLE, RETRYABLE, Status
from app.store import actions, console, queries, run_reads
from app.store.join_reads import get_join
from app.store.join_setup import JoinConflict


@admin.get("/jobs")
def jobs() -> Any:
    rt = runtime()
    job_types = [t.name for t in rt.registry.all()]
    try:
        chosen = filters.parse(request.args)
    except filters.InvalidFilter as exc:
        form = {k: v for k, v in request.args.items() if k != "before"}
        return page(
            "admin/jobs.html", status=400, errors=exc.details, form=form, job_types=job_types
        )
    found = console.list_jobs(rt.db, chosen.query, chosen.limit, chosen.before)
    counts = console.status_counts(rt.db, chosen.query.since, chosen.query.until)
    return page(
        "admin/jobs.html",
        "admin/_jobs_live.html",
        jobs_page=found,
        counts=counts,
        total=sum(counts.values()),
        cap=console.COUNT_CAP,
        form=chosen.form,
        before=chosen.before,
        job_types=job_types,
        errors={},
    )


@admin.get("/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    db = runtime().db
    found = queries.get_job(db, _valid(job_id))
    if found is None:
        abort(404, f"no job {job_id}")
    # The status history an operator reads: a hand-back's internal moves stay in the log.
    events = status_history(queries.get_events(db, job_id) or [])
    join = get_join(db, found["join_id"]) if found["join_id"] is not None else None
    related = [found["root_id"], found["parent_id"], found["blocked_by"], *found["next_job_ids"]]
    related += join["started_job_ids"] if join else []
    return page(
        "admin/job.html",
        "admin/_job_live.html",
        job=found,
        events=events,
        attempts=attempts(found, events),
        log=queries.get_log(db, job_id),
        related=console.brief_jobs(db, [i for i in related if i is not None]),
        join=join,
        refreshes=run_reads.job_asset(db, job_id),
        cancellable=found["status"] in CANCELLABLE,
        retryable=found["status"] in RETRYABLE,
    )


@admin.post("/jobs/<int:job_id>/cancel")
def cancel(job_id: int) -> Any:
    rt = runtime()
    try:
        status = actions.cancel(rt.db, _valid(job_id))
    except actions.NotFound:
        abort(404, f"no job {job_id}")
    except actions.Conflict as exc:
        return _outcome(job_id, str(exc), "error")
    if status == Status.PROCESSING and rt.pool is not None:
        rt.pool.request_abort(job_id)
        return _outcome(job_id, f"Cancel requested: job {job_id} is asked to stop.")
    return _outcome(job_id, f"Cancelled job {job_id} and what had not started below it.")


@admin.post("/jobs/<int:job_id>/retry")
def retry(job_id: int) -> Any:
    try:
        status = actions.retry(runtime().db, _valid(job_id))
    except actions.NotFound:
        abort(404, f"no job {job_id}")
    except actions.Conflict as exc:
        return _outcome(job_id, str(exc), "error")
    return _outcome(job_id, f"Retrying job {job_id}: it is {status} again.")


@admin.post("/jobs/<int:job_id>/rerun")
def rerun(job_id: int) -> Any:
    try:
        new_root = rerun_from(runtime(), _valid(job_id), g.console_user.role)
    except NothingToRerun:
        abort(404, f"no job {job_id}")
    except PayloadError as exc:
        problems = "; ".join(f"{path or '$'}: {', '.join(m)}" for path, m in exc.details.items())
        return _outcome(job_id, f"Not re-run: {exc.message} ({problems})", "error")
    except JoinConflict as exc:
        return _outcome(job_id, f"Not re-run: {exc}", "error")
    flash(f"Started chain {new_root}, a copy of job {job_id} and everything below it.", "ok")
    return redirect(url_for("admin.chain", root_id=new_root), 303)


def attempts(job: dict[str, Any], events: list[dict[str, Any]]) -> list[timeline.Attempt]:
    """Each attempt's claim, real start and end, and outcome, read from the job's status
    history (the timeline's reading)."""
    return timeline.attempts({**job, "events": events})


def _outcome(job_id: int, message: str, kind: str = "ok") -> Any:
    flash(message, kind)
    return redirect(url_for("admin.job", job_id=job_id), 303)


def _valid(job_id: int) -> int:
    if job_id > MAX_ID:
        abort(404, f"no job {job_id}")
    return job_id
