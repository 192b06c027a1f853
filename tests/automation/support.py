"""A model built through the store, a reconciliation loop driven tick by tick, and waits
on what the engine does, for the automation tests (both databases)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from app.runner.automation_loop import AutomationLoop
from app.runtime import Runtime
from app.services.runs import RunService
from app.store import automation_reads, graph_changes, graphs
from app.store.automation_tables import automation_requests
from app.store.runs import RunRequest
from app.store.tables import run_assets
from tests.helpers import wait_until

NOOP = {"targetObject": "x.NOOP"}


@dataclass
class Model:
    runtime: Runtime
    model_id: int
    ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, runtime: Runtime, name: str = "m") -> Model:
        return cls(runtime, graphs.create_model(runtime.db, name, None))

    def asset(self, name: str, *ups: str, **values: Any) -> int:
        row = {"name": name, "job": dict(NOOP), **values}
        if row.get("kind") == "source":
            row.pop("job")
        self.ids[name] = graph_changes.create_asset(self.runtime.db, self.model_id, row)
        for up in ups:
            graph_changes.add_dependency(
                self.runtime.db, self.model_id, self.ids[up], self.ids[name]
            )
        return self.ids[name]

    def change(self, name: str, **values: Any) -> None:
        assert graph_changes.update_asset(self.runtime.db, self.model_id, self.ids[name], values)

    def loop(self, tick_seconds: float = 0.001) -> AutomationLoop:
        """A loop driven by hand (``run_once``); with the default, every call is a new
        tick (a call takes longer than a millisecond)."""
        rt = self.runtime
        settings = replace(rt.settings, automation_tick_seconds=tick_seconds)
        return AutomationLoop(RunService(rt.db, rt.registry, settings))

    def view(self) -> dict[str, dict[str, Any]]:
        """Every asset as the API shows it (settled first)."""
        db, settings = self.runtime.db, self.runtime.settings
        automation_reads.settle_now(db, self.model_id, settings.automation_max_failures)
        rows = graphs.list_assets(db, self.model_id) or []
        automation_reads.annotate(db, self.model_id, rows, time.time())
        return {r["name"]: r for r in rows}

    def run(self, *names: str) -> int:
        service = RunService.for_runtime(self.runtime)
        return service.start(
            self.model_id, RunRequest(assets=list(names), downstream=False), "admin"
        )

    def refreshes(self, name: str) -> list[dict[str, Any]]:
        return automation_reads.refreshes(self.runtime.db, self.ids[name], None, 200).items

    def requested(self) -> list[str]:
        """Every asset an automated tick requested, in order."""
        names = {i: n for n, i in self.ids.items()}
        with self.runtime.db.read() as conn:
            rows = conn.execute(
                select(automation_requests.c.asset_id).order_by(automation_requests.c.id)
            ).scalars()
            return [names[i] for i in rows]

    def settled(self, timeout: float = 20.0) -> None:
        """Wait until every refresh started so far has ended and is recorded."""

        def done() -> bool:
            self.view()
            with self.runtime.db.read() as conn:
                left = conn.execute(
                    select(run_assets.c.id).where(
                        run_assets.c.model_id == self.model_id, run_assets.c.settled.is_(False)
                    )
                ).first()
            return left is None

        wait_until(done, timeout, what="every refresh to end")
