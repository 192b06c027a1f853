"""``jobchain serve``: the API on waitress, worker threads and housekeeping, one process."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url
from waitress.server import create_server

from app.runner.background import Background
from app.runner.process_setup import StartupError, configure_logging, load_job_modules
from app.runtime import Runtime
from app.security.admin_token import ADMIN_TOKEN_FILE, ensure_admin_token
from app.store.tokens import TokenConfigError
from app.web import create_app
from config import Settings
from jobs import REGISTRY
from jobs.external import CALLBACK_BASE

log = logging.getLogger("jobchain.server")


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop claiming and let running jobs finish briefly.

    Everything that can fail at startup (job modules, the listen socket) happens before
    workers start, so a failed start leaves nothing half-running.
    """
    load_job_modules(settings.job_modules)
    configure_logging()
    runtime = Runtime.create(settings)
    try:
        app = create_app(runtime=runtime)
    except TokenConfigError as exc:
        runtime.db.dispose()
        raise StartupError(str(exc)) from None
    # First start with no token at all: an admin token, so `make run` needs no set-up.
    first_admin_token = ensure_admin_token(runtime.db)
    try:
        server = create_server(app, host=settings.host, port=settings.port, threads=8)
    except OSError as exc:
        runtime.db.dispose()
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None

    def _stop(signum: int, _frame: FrameType | None) -> None:
        # waitress's loop catches SystemExit and returns. The handlers are reset below, so
        # a second signal during the graceful wait kills the process at once.
        raise SystemExit(0)

    # Installed before the URL is printed: whoever reads it may signal right away.
    signal.signal(signal.SIGTERM, _stop)
    background = Background(runtime)
    try:
        # EXTERNAL jobs (resumed the moment workers start) give this as their callback URL
        # unless JOBCHAIN_PUBLIC_URL says otherwise.
        CALLBACK_BASE.listening_on(_base_urls(server, settings)[0])
        background.start()
        _announce(server, settings)
        if first_admin_token is not None:
            print(
                f"  first start: created admin token {first_admin_token}\n"
                f"  saved to {ADMIN_TOKEN_FILE.absolute()} (mode 0600), where the CLI finds it; "
                "it is not shown again",
                flush=True,
            )
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        log.info("shutting down: waiting for running jobs")
        server.close()
        background.stop(settings.shutdown_grace_seconds)
        runtime.db.dispose()
        log.info("stopped")
    sys.exit(0)


def _announce(server: Any, settings: Settings) -> None:
    """Print the real address (tests and scripts parse the first line); the password of a
    database URL is masked."""
    bases = _base_urls(server, settings)
    for base in bases:
        print(f"jobchain API listening on {base}/api/v1", flush=True)
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    job_types = ", ".join(t.name for t in REGISTRY.all())
    print(f"  console: {bases[0]}/admin   health: {bases[0]}/health", flush=True)
    print(f"  database: {database}", flush=True)
    print(f"  job types: {job_types}", flush=True)


def _base_urls(server: Any, settings: Settings) -> list[str]:
    return [
        f"http://{f'[{host}]' if ':' in host else host}:{port}"
        for host, port in _addresses(server, settings)
    ]


def _addresses(server: Any, settings: Settings) -> list[tuple[str, int]]:
    """Where waitress actually listens: port 0 picks a free port, a name may bind several."""
    if hasattr(server, "effective_listen"):
        return [(str(host), int(port)) for host, port in server.effective_listen]
    host = getattr(server, "effective_host", settings.host)
    return [(str(host), int(getattr(server, "effective_port", settings.port)))]
