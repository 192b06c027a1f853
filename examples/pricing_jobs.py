"""Example user job types: price list recalculation (LPG) and calculated field sets (CFS).

Load them with ``JOBCHAIN_JOB_MODULES=examples.pricing_jobs jobchain serve`` (run from the
repository root), then submit ``examples/price-list.json``. The work is simulated; replace
the bodies with calls into your own system. What matters is the shape: a function taking
the job's context, reporting progress, logging, checking for cancellation between steps,
and returning a small JSON result (or raising ``JobFailed``).
"""

from __future__ import annotations

from typing import Any

from jobs import JobContext, JobFailed, job_type

MODES = {"full": 1200, "delta": 80}  # mode -> articles repriced (simulated)
PRICING_STEPS = ("loading articles", "applying discounts", "rounding prices", "publishing")


@job_type("LPG")
def recalculate_price_list(ctx: JobContext) -> dict[str, Any] | None:
    """Recalculates price list <id>.LPG; parameters.mode is "full" or "delta"."""
    mode = ctx.parameters.get("mode", "delta")
    if mode not in MODES:
        raise JobFailed(f"parameters.mode must be one of {', '.join(MODES)}, got {mode!r}")
    step_seconds = float(ctx.parameters.get("stepSeconds", 0.25))
    ctx.logger.info(
        "recalculating price list %s (%s, attempt %d)", ctx.target_id, mode, ctx.attempt
    )
    for done, step in enumerate(PRICING_STEPS):
        ctx.progress(100 * done / len(PRICING_STEPS), step)
        ctx.logger.info("%s", step)
        # ctx.wait instead of time.sleep: returns True at once when the job is cancelled.
        if ctx.wait(step_seconds):
            ctx.logger.warning("stopped while %s (%s)", step, ctx.abort_reason)
            return None
    ctx.progress(100, "published")
    articles = MODES[mode]
    ctx.logger.info("repriced %d articles", articles)
    return {"priceList": ctx.target_id, "mode": mode, "articles": articles}


@job_type("CFS")
def recalculate_field_set(ctx: JobContext) -> dict[str, Any]:
    """Recomputes calculated field set <id>.CFS; parameters.fields limits which fields."""
    fields = ctx.parameters.get("fields", ["margin", "discountedPrice", "vat"])
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise JobFailed("parameters.fields must be a list of field names")
    for done, name in enumerate(fields):
        if ctx.should_abort():
            break
        ctx.progress(100 * done / max(1, len(fields)), f"calculating {name}")
        ctx.logger.info("calculated field %s of set %s", name, ctx.target_id)
    ctx.progress(100, f"{len(fields)} fields calculated")
    return {"fieldSet": ctx.target_id, "fields": len(fields)}
