"""Starting a run of a model, whoever starts it: ``POST /models/{id}/runs``, the CLI (through
the API) and the assets' cron (the schedule loop).

A run is compiled into one ordinary chain (``app.domain.runs``) and goes through the one
submit pipeline (``app/services/submit.py``: parse, plan joins, check the starter's role
against every job type) inside the transaction that stores the run (``app/store/runs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.join_plan import JoinPlan
from app.domain.payload import JobSpec, Limits
from app.runtime import Runtime
from app.services.submit import SubmitService
from app.store import runs
from app.store.database import Database
from config import Settings
from jobs.registry import Registry

# A run's chain has one job per asset and one JOIN node per dependency, at most two levels
# per dependency deep: the model's size bounds it (a graph file holds at most 10,000
# assets and 50,000 dependencies), not the limits meant for hand-written payloads.
RUN_LIMITS = Limits(max_depth=20_002, max_nodes=60_001)


@dataclass(frozen=True)
class RunService:
    db: Database
    registry: Registry
    settings: Settings

    @classmethod
    def for_runtime(cls, rt: Runtime) -> RunService:
        return cls(rt.db, rt.registry, rt.settings)

    def builder(self, role: str) -> runs.BuildChain:
        """The submit pipeline as a run's store needs it: payload -> checked tree."""
        submit = SubmitService(self.db, self.registry, self.settings)

        def build(payload: Any) -> tuple[JobSpec, list[JoinPlan]]:
            chain = submit.prepare(payload, role, RUN_LIMITS)
            return chain.root, chain.joins

        return build

    def start(self, model_id: int, request: runs.RunRequest, role: str) -> int:
        """Store the run and its chain; returns the run's id (raises what
        ``runs.create_run`` raises, PayloadError and RoleDenied included)."""
        return runs.create_run(self.db, model_id, request, self.builder(role))
