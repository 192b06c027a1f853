"""The callback deadline of an EXTERNAL job, which holds its lease while it waits.

A leaf module: the lease reaper (lifecycle) and the EXTERNAL store (external) both need it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from app.domain.statuses import Transition

# The lease owner of a job waiting for its callback: no worker holds it.
OWNER = "external"
DEFAULT_TIMEOUT_SECONDS = 3600.0


def callback_timeout(parameters: dict[str, Any]) -> float:
    """``parameters.timeoutSeconds`` (validated by the job type before notifying), or the
    default."""
    value = parameters.get("timeoutSeconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_TIMEOUT_SECONDS


def on_deadline(row: Row[Any]) -> tuple[Transition, dict[str, Any]]:
    """What the lease reaper does with a job whose callback deadline passed: fail it (it is
    never re-run: the external system may still be working on it)."""
    seconds = callback_timeout(row.parameters)
    return Transition.FAIL, {"message": f"no callback within {seconds:g} s"}
