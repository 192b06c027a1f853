"""The chain page: a whole tree with status, timing, joins and a timeline, live."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, url_for

from app.admin import timeline
from app.admin.blueprint import admin, page, runtime
from app.api.shared import MAX_ID
from app.store import console, queries
from app.store.database import now


@admin.get("/chains/<int:root_id>")
def chain(root_id: int) -> Any:
    db = runtime().db
    found = console.get_chain(db, root_id) if root_id <= MAX_ID else None
    if found is None:
        job = queries.get_job(db, root_id) if root_id <= MAX_ID else None
        if job is None:
            abort(404, f"no job {root_id}")
        # A job inside a chain: show its chain, scrolled to it.
        return redirect(url_for("admin.chain", root_id=job["root_id"], _anchor=f"job-{root_id}"))
    t = now()
    span = timeline.chain_span(found.nodes, t)
    bars = {node["id"]: timeline.segments(node, span, t) for node in found.nodes}
    return page(
        "admin/chain.html",
        "admin/_chain_live.html",
        chain=found,
        span=span,
        bars=bars,
        now=t,
        counts=_counts(found.nodes),
    )


def _counts(nodes: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node["status"]] = counts.get(node["status"], 0) + 1
    return counts
