"""The model page's Run button and its runs and batches, waiting for the runs API.

Runs of a model (app/api and app/store/graph_runs*) are being built separately; until they
exist the page shows the button disabled with ``NOTE`` and no runs. Wiring them is one call
in each function below (and ``AVAILABLE = True``): the views and templates already use them.
"""

from __future__ import annotations

from typing import Any

from app.runtime import Runtime
from app.store.database import Database

AVAILABLE = False
NOTE = "runs arrive with the runs API"


class RunsUnavailable(Exception):
    """There is no runs API in this build."""


def start(rt: Runtime, model_id: int, role: str) -> int:
    """Start a run of every asset of the model, as ``role``; returns the run's id."""
    raise RunsUnavailable(NOTE)


def recent(db: Database, model_id: int) -> list[dict[str, Any]]:
    """The model's latest runs and batches, newest first (none before the runs API)."""
    return []
