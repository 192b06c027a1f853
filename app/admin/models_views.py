"""The models pages: every model, one model's graph with its assets' last refreshes, and an
asset's drawer where its dependencies are added and deleted.

A dependency is added through the API's own path (``model_graph.store_dependency``: the
store's checks under the model's lock, the domain's cycle rule), so the console refuses
exactly what the API refuses, with the same message. The picture is laid out in the browser
(static/graph.js with the vendored dagre) from the levels the domain computes here.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g, redirect, request, url_for

from app.admin import automation_view, model_runs
from app.admin.access import flash
from app.admin.blueprint import FRAGMENT_HEADER, admin, is_fetch, page, runtime
from app.api.errors import ApiError
from app.api.model_graph import store_dependency
from app.api.shared import MAX_ID
from app.domain import graphs as rules
from app.domain.statuses import TERMINAL
from app.store import automation_reads, graph_changes, graphs
from app.store.database import Database

# The picture is laid out in the browser; past this many assets only the table is shown.
MAX_DRAWN = 400
# console.js asks for the drawer alone with this value of the fragment header.
DRAWER = "drawer"
REFRESH_SECONDS = 3
# While any asset is under automation or has a freshness policy: its status moves by itself.
AUTOMATION_REFRESH_SECONDS = 10
# Automation events (late, recovered, held, released) listed on the model page.
RECENT_EVENTS = 20


@admin.get("/models")
def models() -> Any:
    return page("admin/models.html", models=graphs.list_models(runtime().db))


@admin.get("/models/<int:model_id>")
def model(model_id: int) -> Any:
    return _model_page(model_id, None)


@admin.get("/models/<int:model_id>/assets/<int:asset_id>")
def model_asset(model_id: int, asset_id: int) -> Any:
    """The model page with the asset's drawer open; the drawer alone for graph.js."""
    if request.headers.get(FRAGMENT_HEADER) == DRAWER:
        return _drawer(model_id, asset_id)
    return _model_page(model_id, asset_id)


@admin.post("/models/<int:model_id>/assets/<int:asset_id>/dependencies")
def model_add_dependency(model_id: int, asset_id: int) -> Any:
    """The asset (downstream) depends on the chosen ``upstream_id`` from now on."""
    db = runtime().db
    asset = _asset_or_404(db, model_id, asset_id)
    chosen = request.form.get("upstream_id", "").strip()
    if not chosen.isdigit() or not 0 < int(chosen) <= MAX_ID:
        return _refused(model_id, asset_id, "choose the asset it depends on", 400)
    try:
        store_dependency(db, model_id, int(chosen), asset_id)
    except ApiError as exc:
        return _refused(model_id, asset_id, exc.message, exc.status)
    upstream = graphs.get_asset(db, model_id, int(chosen))
    name = upstream["name"] if upstream else f"asset {chosen}"
    return _done(model_id, asset_id, f"{asset['name']} now depends on {name}.", 201)


@admin.post("/models/<int:model_id>/assets/<int:asset_id>/dependencies/<int:dependency_id>/delete")
def model_delete_dependency(model_id: int, asset_id: int, dependency_id: int) -> Any:
    """Delete one of the asset's dependencies (upstream or downstream)."""
    db = runtime().db
    _asset_or_404(db, model_id, asset_id)
    found = graph_changes.get_dependency(db, model_id, dependency_id)
    if found is None or asset_id not in (found["upstream_id"], found["downstream_id"]):
        return _refused(model_id, asset_id, f"no dependency {dependency_id}: deleted already?", 404)
    if not graph_changes.delete_dependency(db, model_id, dependency_id):
        return _refused(model_id, asset_id, f"no dependency {dependency_id}: deleted already?", 404)
    message = f"{found['downstream']} no longer depends on {found['upstream']}."
    return _done(model_id, asset_id, message, 200)


@admin.post("/models/<int:model_id>/assets/<int:asset_id>/release")
def model_release(model_id: int, asset_id: int) -> Any:
    """End the asset's hold: the reconciliation loop may run it again."""
    db = runtime().db
    asset = _asset_or_404(db, model_id, asset_id)
    if not automation_reads.release(db, model_id, asset_id):
        return _refused(model_id, asset_id, f"{asset['name']} is not held.", 409)
    return _done(model_id, asset_id, f"{asset['name']} released: automation may run it.", 200)


@admin.post("/models/<int:model_id>/runs")
def model_run(model_id: int) -> Any:
    rt = runtime()
    _model_or_404(rt.db, model_id)
    try:
        run_id = model_runs.start(rt, model_id, g.console_user.role)
    except model_runs.RunRefused as exc:
        flash(f"Not started: {exc}", "error")
    else:
        flash(f"Started run {run_id}.", "ok")
    return redirect(url_for("admin.model", model_id=model_id), 303)


# -- what the pages show ------------------------------------------------------------------


def _model_page(model_id: int, asset_id: int | None, status: int = 200, **extra: Any) -> Any:
    db = runtime().db
    found = _model_or_404(db, model_id)
    view = _graph_view(db, model_id)
    drawer = None
    if asset_id is not None:
        drawer = _drawer_context(db, model_id, asset_id, view)
        if drawer is None:
            abort(404, f"model {model_id} has no asset {asset_id}")
    return page(
        "admin/model.html",
        "admin/_model_live.html",
        status=status,
        model=found,
        view=view,
        drawer=drawer,
        told=extra.get("told"),
        runs=model_runs.recent(db, model_id),
        events=automation_reads.events(db, model_id, None, None, RECENT_EVENTS).items,
    )


def _drawer(model_id: int, asset_id: int, status: int = 200, told: Any = None) -> Any:
    db = runtime().db
    _model_or_404(db, model_id)
    drawer = _drawer_context(db, model_id, asset_id, _graph_view(db, model_id))
    if drawer is None:
        abort(404, f"model {model_id} has no asset {asset_id}")
    return page("admin/_asset_drawer.html", status=status, drawer=drawer, told=told)


def _graph_view(db: Database, model_id: int) -> dict[str, Any]:
    """The assets with their level and last refresh, the dependencies, and the picture's
    data for graph.js."""
    assets = graphs.list_assets(db, model_id) or []
    automation_view.annotate(db, model_id, assets, runtime().settings.automation_max_failures)
    dependencies = graphs.list_dependencies(db, model_id) or []
    ids = {a["id"] for a in assets}
    # Two reads: a change between them must not leave a dependency on a missing asset.
    dependencies = [
        d for d in dependencies if d["upstream_id"] in ids and d["downstream_id"] in ids
    ]
    names = [a["name"] for a in assets]
    edges = [(d["upstream"], d["downstream"]) for d in dependencies]
    level_of = {n: i for i, level in enumerate(rules.levels(names, edges)) for n in level}
    terminal = {s.value for s in TERMINAL}
    counts: dict[str, int] = {}
    for asset in assets:
        asset["level"] = level_of[asset["name"]]
        refresh = asset["last_refresh"]
        asset["state"] = refresh["status"] if refresh else "never"
        asset["refreshing"] = bool(refresh) and refresh["status"] not in terminal
        asset["refreshed_at"] = refresh and (refresh["finished_at"] or refresh["started_at"])
        counts[asset["state"]] = counts.get(asset["state"], 0) + 1
    picture = {
        "assets": [
            {
                "id": a["id"],
                "name": a["name"],
                "level": a["level"],
                "state": a["state"],
                "at": a["refreshed_at"],
                "status": a["status"],
                "badges": a["badges"],
                "cause": a["cause_text"],
                "url": url_for("admin.model_asset", model_id=model_id, asset_id=a["id"]),
            }
            for a in assets
        ],
        "dependencies": [
            {"up": d["upstream_id"], "down": d["downstream_id"]} for d in dependencies
        ],
    }
    return {
        "assets": assets,
        "dependencies": dependencies,
        "levels": max(level_of.values(), default=-1) + 1,
        "counts": counts,
        "picture": picture if len(assets) <= MAX_DRAWN else None,
        "max_drawn": MAX_DRAWN,
        "refresh_seconds": _refresh_seconds(assets),
        "statuses": {
            s: sum(a["status"] == s for a in assets) for s in ("MISSING", "STALE", "FRESH")
        },
        "late": sum(bool(a["late"]) for a in assets),
        "held": sum(bool(a["held"]) for a in assets),
    }


def _refresh_seconds(assets: list[dict[str, Any]]) -> int:
    if any(a["refreshing"] for a in assets):
        return REFRESH_SECONDS
    automated = any(a["automation"] == "reconcile" or a["freshness"] for a in assets)
    return AUTOMATION_REFRESH_SECONDS if automated else 0


def _drawer_context(
    db: Database, model_id: int, asset_id: int, view: dict[str, Any]
) -> dict[str, Any] | None:
    """One asset with its dependencies both ways (each with its id, for deleting) and the
    assets it could depend on next."""
    by_id = {a["id"]: a for a in view["assets"]}
    asset = by_id.get(asset_id) if asset_id <= MAX_ID else None
    if asset is None:
        return None
    ups = [d for d in view["dependencies"] if d["downstream_id"] == asset_id]
    downs = [d for d in view["dependencies"] if d["upstream_id"] == asset_id]
    taken = {d["upstream_id"] for d in ups} | {asset_id}
    return {
        "model_id": model_id,
        "asset": asset,
        "depends_on": sorted(ups, key=lambda d: d["upstream"]),
        "required_by": sorted(downs, key=lambda d: d["downstream"]),
        "candidates": [a for a in view["assets"] if a["id"] not in taken],
        "automation": automation_view.drawer(db, asset),
    }


def _done(model_id: int, asset_id: int, message: str, status: int) -> Any:
    """A change made: the fresh drawer for graph.js, else back to the page (303)."""
    if is_fetch():
        return _drawer(model_id, asset_id, status, ("ok", message))
    flash(message, "ok")
    return redirect(url_for("admin.model_asset", model_id=model_id, asset_id=asset_id), 303)


def _refused(model_id: int, asset_id: int, message: str, status: int) -> Any:
    """A change refused: the reason in the drawer, nothing stored."""
    if is_fetch():
        return _drawer(model_id, asset_id, status, ("error", message))
    return _model_page(model_id, asset_id, status, told=("error", message))


def _model_or_404(db: Database, model_id: int) -> dict[str, Any]:
    found = graphs.get_model(db, model_id) if model_id <= MAX_ID else None
    if found is None:
        abort(404, f"no model {model_id}")
    return found


def _asset_or_404(db: Database, model_id: int, asset_id: int) -> dict[str, Any]:
    found = None
    if max(model_id, asset_id) <= MAX_ID:
        found = graphs.get_asset(db, model_id, asset_id)
    if found is None:
        abort(404, f"model {model_id} has no asset {asset_id}")
    return found
