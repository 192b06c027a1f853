"""Declarative automation on the model page: each asset's status (FRESH, STALE, MISSING,
with LATE and held) and its causes in words, and for the asset drawer its recent
refreshes with their reasons, its last evaluation ("why didn't it run?") and a small lag
chart drawn as inline SVG from its refreshes.

The chart's line is the age of the data each successful refresh started with: it drops
when a refresh ends and grows until the next one, an upper bound of the lag (the asset
holds at least that data). The dot at its right end is the lag now, as the status says.
"""

from __future__ import annotations

import time
from typing import Any

from app.store import automation_reads
from app.store.database import Database

# Refreshes shown in the drawer, and read for the chart.
SHOWN_REFRESHES = 8
CHART_REFRESHES = 100
CHART_HOURS = 6
# The chart's drawing box (viewBox units); the left margin holds the lag labels.
CHART = {"width": 320.0, "height": 120.0, "left": 42.0, "top": 8.0, "bottom": 18.0}
OK = "FINISHED"


def annotate(db: Database, model_id: int, assets: list[dict[str, Any]], max_failures: int) -> None:
    """Each asset's status, causes, lag and hold, as the API shows them, plus ``badges``
    (what the graph and the table show) and ``cause_text``."""
    automation_reads.settle_now(db, model_id, max_failures)
    automation_reads.annotate(db, model_id, assets, time.time())
    for asset in assets:
        asset["badges"] = badges(asset)
        asset["cause_text"] = cause_text(asset)


def badges(asset: dict[str, Any]) -> list[str]:
    """The status, then LATE and HELD when they apply."""
    shown = [asset["status"]]
    if asset.get("late"):
        shown.append("LATE")
    if asset.get("held"):
        shown.append("HELD")
    return shown


def cause_text(asset: dict[str, Any]) -> str:
    """What the status says in a sentence (the graph's hover text)."""
    words = {"CODE": "new code version", "DATA": "new data from", "DEPENDENCIES": "upstream of"}
    parts = []
    for c in asset.get("causes") or []:
        if c["cause"] == "CODE":
            parts.append(f"new code version of {c['asset']}")
        else:
            parts.append(f"{words.get(c['cause'], c['cause'])} {c['asset']}")
    text = asset["status"] + (f": {'; '.join(parts)}" if parts else "")
    if asset.get("late"):
        text += f"; late by {span(asset['late_by'])}"
    if asset.get("held"):
        text += f"; held after failed runs ({asset.get('held_error') or 'no error'})"
    return text


def drawer(db: Database, asset: dict[str, Any]) -> dict[str, Any]:
    """The drawer's automation part: refreshes, last evaluation, lag chart."""
    now = time.time()
    recent = automation_reads.refreshes(db, asset["id"], None, CHART_REFRESHES).items
    last = automation_reads.evaluations(db, asset["id"], None, 1).items
    evaluation = last[0] if last else None
    policy = asset.get("freshness")
    max_lag = float(policy["maximumLagMinutes"]) * 60 if policy else None
    current = asset.get("current_data_time")
    lag_now = max(0.0, now - current) if current is not None else None
    return {
        "refreshes": recent[:SHOWN_REFRESHES],
        "evaluation": evaluation,
        "conditions": conditions(evaluation),
        "lag_now": lag_now,
        "max_lag": max_lag,
        "policy": policy_text(policy),
        "chart": lag_chart(recent, lag_now, max_lag, now),
    }


def policy_text(policy: dict[str, Any] | None) -> str | None:
    if not policy:
        return None
    text = f"maximum lag {span(float(policy['maximumLagMinutes']) * 60)}"
    if policy.get("cronSchedule"):
        zone = policy.get("timezone") or "UTC"
        text += f", by each tick of {policy['cronSchedule']} ({zone})"
    return text


def conditions(evaluation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The evaluation's conditions, each with ``shown``: its value in words."""
    if evaluation is None:
        return []
    found = []
    for c in (evaluation.get("conditions") or {}).get("conditions") or []:
        found.append({**c, "shown": condition_value(c)})
    return found


def condition_value(condition: dict[str, Any]) -> str:
    if "status" in condition:
        causes = ", ".join(f"{c['cause']} {c['asset']}" for c in condition.get("causes") or [])
        return condition["status"] + (f" ({causes})" if causes else "")
    if "value" not in condition:
        return ""
    value = condition["value"]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict) and "maximumLagSeconds" in value:
        lag = value.get("lagSeconds")
        parts = [
            "no new data waiting" if lag is None else f"lag {span(lag)}",
            f"at most {span(value['maximumLagSeconds'])}",
        ]
        deadline = value.get("deadline")
        if deadline is not None:
            left = deadline - time.time()
            parts.append(
                f"deadline in {span(left)}" if left >= 0 else f"deadline {span(-left)} ago"
            )
        if value.get("late"):
            parts.append("late")
        return ", ".join(parts)
    return "" if value is None else str(value)


def lag_chart(
    refreshes: list[dict[str, Any]], lag_now: float | None, max_lag: float | None, now: float
) -> dict[str, Any] | None:
    """The chart's SVG geometry over the last hours, or None without a finished refresh.

    ``refreshes`` are newest first, as the API lists them."""
    done = sorted(
        (r for r in refreshes if r["status"] == OK and r["finished_at"] and r["started_at"]),
        key=lambda r: r["finished_at"],
    )
    if not done:
        return None
    window = now - CHART_HOURS * 3600
    inside = [r for r in done if r["finished_at"] >= window]
    before = [r for r in done if r["finished_at"] < window]
    start = window if before else min(r["started_at"] for r in inside)
    start = min(start, now - 1.0)
    # The line: (time, lag) points, a drop at each refresh's end.
    points: list[tuple[float, float]] = []
    held = before[-1]["started_at"] if before else None
    if held is not None:
        points.append((start, start - held))
    for r in inside:
        if held is not None:
            points.append((r["finished_at"], r["finished_at"] - held))
        held = r["started_at"]
        points.append((r["finished_at"], r["finished_at"] - held))
    assert held is not None
    points.append((now, now - held))
    top = max([lag for _, lag in points] + [max_lag or 0.0, lag_now or 0.0]) * 1.15 or 1.0
    c = CHART
    plot_w = c["width"] - c["left"] - 4
    plot_h = c["height"] - c["top"] - c["bottom"]

    def x(t: float) -> float:
        return round(c["left"] + (t - start) / (now - start) * plot_w, 1)

    def y(lag: float) -> float:
        return round(c["top"] + plot_h - max(0.0, lag) / top * plot_h, 1)

    failed = [
        x(r["finished_at"])
        for r in refreshes
        if r["status"] not in (OK, None) and r["finished_at"] and r["finished_at"] >= start
    ]
    return {
        "width": c["width"],
        "height": c["height"],
        "left": c["left"],
        "right": c["width"] - 4,
        "top": c["top"],
        "base": c["top"] + plot_h,
        "line": " ".join(f"{x(t)},{y(lag)}" for t, lag in points),
        "policy_y": y(max_lag) if max_lag is not None else None,
        "policy_label": f"max {short(max_lag)}" if max_lag is not None else None,
        "now": {"x": x(now), "y": y(lag_now)} if lag_now is not None else None,
        "failed": failed,
        "top_label": short(top),
        "start": start,
        "end": now,
        "late": max_lag is not None and any(lag > max_lag for _, lag in points),
    }


def short(seconds: float) -> str:
    """A chart's label: 45 s, 11.5 min, 2.5 h."""
    if seconds < 60:
        return span(seconds)
    if seconds < 3600:
        return f"{seconds / 60:.1f}".removesuffix(".0") + " min"
    return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"


def span(seconds: float) -> str:
    """60 ms, 12 s, 2 min 5 s, 3 h 10 min."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
