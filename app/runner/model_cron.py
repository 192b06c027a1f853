"""The assets' cron, served by the schedule loop (no thread of its own): at each fire time
a model's assets due then form one run without downstream (``app/store/model_fires.py``
makes it one run per model and fire time, whatever the number of processes)."""

from __future__ import annotations

import logging

from app.services.runs import RunService
from app.store import model_fires
from app.store.database import Database
from app.store.schedules import NextFire

log = logging.getLogger("jobchain.scheduling")

# Only admins create assets and their cron (app/security/roles.py): a fire runs as one.
FIRE_ROLE = "admin"


def fire_due(service: RunService, at: float, next_fire: NextFire) -> list[model_fires.ModelFire]:
    """Start the run of every model fire time due at ``at`` (each once; like schedules,
    fire times missed while no scheduler ran coalesce into the next check's one run)."""
    db: Database = service.db
    model_fires.schedule_new(db, next_fire)
    fired: list[model_fires.ModelFire] = []
    build = service.builder(FIRE_ROLE)
    for model_id, fire_time in model_fires.due(db, at):
        try:
            done = model_fires.fire(db, model_id, fire_time, at, next_fire, build)
        except Exception:  # one broken model must not stop the others
            log.exception("model %d: cron fire at %s failed", model_id, fire_time)
            continue
        if done is None:
            continue
        fired.append(done)
        if done.run_id is None:
            log.error("model %d: cron fire: %s", model_id, done.message)
        else:
            log.info("model %d: cron run %d of %s", model_id, done.run_id, ", ".join(done.assets))
    if any(f.run_id is not None for f in fired):
        db.notify_dispatchable()
    return fired
