"""The model page's Run button and its runs and batches, through the runs service.

A run started here goes through the same service as ``POST /models/{id}/runs`` (the
submit pipeline, the role check, the batch rules); the page shows the model's latest runs.
"""

from __future__ import annotations

from typing import Any

from app.domain.payload import PayloadError
from app.runtime import Runtime
from app.services.runs import RunService
from app.store import run_reads
from app.store.database import Database
from app.store.runs import AlreadyInBatch, RunRequest

SHOWN = 20
# Run states read as job statuses do: the badge's colour follows the same classes.
STATE_BADGE = {"RUNNING": "PROCESSING", "SUCCEEDED": "FINISHED"}


class RunRefused(Exception):
    """The run could not start; the message says why (shown on the page)."""


def start(rt: Runtime, model_id: int, role: str) -> int:
    """Start a run of every asset of the model, as ``role``; returns the run's id."""
    try:
        return RunService.for_runtime(rt).start(model_id, RunRequest(), role)
    except (PayloadError, AlreadyInBatch) as exc:
        raise RunRefused(str(exc)) from exc


def recent(db: Database, model_id: int) -> list[dict[str, Any]]:
    """The model's latest runs, newest first, with the state of each."""
    found = run_reads.list_runs(db, model_id)[-SHOWN:]
    return [
        {**run, "badge": STATE_BADGE.get(run["state"], run["state"])} for run in reversed(found)
    ]
