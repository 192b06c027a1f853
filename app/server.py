"""``jobchain serve``: the API on waitress, worker threads and housekeeping, one process."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from waitress import create_server

from app import create_app
from app.housekeeping import start_housekeeping
from app.runtime import Runtime
from app.worker import WorkerPool
from config import Settings

log = logging.getLogger("jobchain.server")


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop claiming and let running jobs finish briefly."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = Runtime.create(settings)
    pool = WorkerPool(runtime.db, runtime.registry, settings)
    runtime.pool = pool
    app = create_app(runtime=runtime)
    scheduler = start_housekeeping(runtime.db, settings.reap_interval_seconds)
    pool.start()
    server = create_server(app, host=settings.host, port=settings.port, threads=8)
    port = getattr(server, "effective_port", settings.port)
    host = getattr(server, "effective_host", settings.host)
    print(f"jobchain API listening on http://{host}:{port}/api/v1", flush=True)
    print(f"  health: http://{host}:{port}/health   database: {settings.database_url}", flush=True)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        log.info("shutting down")
        server.close()
        scheduler.shutdown(wait=False)
        pool.stop()
        runtime.db.dispose()
    sys.exit(0)
