"""``jobchain worker``: worker threads, housekeeping and schedules with no API.

Run any number of these, on any number of machines, against one PostgreSQL database; they
coordinate only through it (claims with SKIP LOCKED, leases with fencing tokens).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from sqlalchemy.engine import make_url

from app.runner.background import Background
from app.runner.process_setup import configure_logging, load_job_modules
from app.runtime import Runtime
from config import Settings
from jobs import REGISTRY

log = logging.getLogger("jobchain.worker")

# Printed once the worker claims jobs; scripts and tests wait for this line.
READY_LINE = "jobchain worker ready"


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop claiming and give running jobs a grace period.

    A second signal during the grace period ends the process at once; its running jobs are
    then recovered by the reaper of any other process, as after a crash.
    """
    load_job_modules(settings.job_modules)
    configure_logging()
    runtime = Runtime.create(settings)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    background = Background(runtime)
    try:
        background.start()
        database = make_url(settings.database_url).render_as_string(hide_password=True)
        job_types = ", ".join(t.name for t in REGISTRY.all())
        print(
            f"{READY_LINE}: {background.pool.owner} ({settings.workers} threads)\n"
            f"  database: {database}\n  job types: {job_types}",
            flush=True,
        )
        # A timed wait, not stop.wait(): the kernel may deliver SIGTERM to any thread, and
        # then an untimed lock wait in the main thread is never interrupted to run the handler
        # (seen after SIGSTOP/SIGCONT). Waking once a second lets the handler run.
        while not stop.wait(1.0):
            pass
    finally:
        log.info(
            "shutting down: waiting up to %.0f s for running jobs", settings.shutdown_grace_seconds
        )
        background.stop(settings.shutdown_grace_seconds)
        runtime.db.dispose()
        log.info("stopped")
