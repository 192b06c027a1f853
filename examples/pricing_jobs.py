"""Example user job types: price list recalculation (LPG) and calculated field sets (CFS).

Load them with ``JOBCHAIN_JOB_MODULES=examples.pricing_jobs jobchain serve`` (run from the
repository root), then submit ``examples/price-list.json``. The work is simulated; replace
the bodies with calls into your own system. What matters is the shape: a function taking
the job's context, reporting progress, logging, checking for cancellation between steps,
and returning a small JSON result (or raising ``JobFailed``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from jobs import JobContext, job_type
from jobs.params import Number, Parameters, String

MODES = {"full": 1200, "delta": 80}  # mode -> articles repriced (simulated)
PRICING_STEPS = ("loading articles", "applying discounts", "rounding prices", "publishing")


class PriceListParameters(Parameters):
    """Checked at submission: a bad mode is a 400 naming parameters.mode, not a failed job."""

    mode = String(load_default="delta", validate=validate.OneOf(list(MODES)))
    stepSeconds = Number(load_default=0.25, validate=validate.Range(min=0, max=60))


class FieldSetParameters(Parameters):
    # "fields" is the JSON name; a Schema's own attribute of that name must stay its own.
    field_names = fields.List(
        String(validate=validate.Length(min=1)),
        data_key="fields",
        load_default=lambda: ["margin", "discountedPrice", "vat"],
        metadata={"description": "which calculated fields to recompute"},
    )


@job_type("LPG", params=PriceListParameters)
def recalculate_price_list(ctx: JobContext) -> dict[str, Any] | None:
    """Recalculates price list <id>.LPG; parameters.mode is "full" or "delta"."""
    mode: str = ctx.parameters["mode"]  # loaded by PriceListParameters: valid, defaulted
    step_seconds: float = ctx.parameters["stepSeconds"]
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


@job_type("CFS", params=FieldSetParameters)
def recalculate_field_set(ctx: JobContext) -> dict[str, Any]:
    """Recomputes calculated field set <id>.CFS; parameters.fields limits which fields."""
    names: list[str] = ctx.parameters["field_names"]
    for done, name in enumerate(names):
        if ctx.should_abort():
            break
        ctx.progress(100 * done / max(1, len(names)), f"calculating {name}")
        ctx.logger.info("calculated field %s of set %s", name, ctx.target_id)
    ctx.progress(100, f"{len(names)} fields calculated")
    return {"fieldSet": ctx.target_id, "fields": len(names)}
