"""``jobchain serve`` and ``jobchain worker``: the commands that run the service itself
(the others talk to a running one), and ``jobchain ready``, which waits until a service
being started answers. The server modules load when the command runs, so the API-calling
commands start without them."""

from __future__ import annotations

import time

import click

from app.cli.client import ApiClient, ApiClientError, ApiUnavailable
from config import Settings


@click.command()
@click.option("--host", envvar="JOBCHAIN_HOST", default=None, help="Listen address.")
@click.option("--port", envvar="JOBCHAIN_PORT", type=int, default=None, help="Listen port.")
@click.option(
    "--workers",
    envvar="JOBCHAIN_WORKERS",
    type=int,
    default=None,
    help="Worker threads running jobs.",
)
@click.option(
    "--database-url",
    envvar="JOBCHAIN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL; default sqlite:///var/jobchain.db.",
)
def serve(
    host: str | None, port: int | None, workers: int | None, database_url: str | None
) -> None:
    """Start the API, the workers and housekeeping in this process."""
    from app.runner.process_setup import StartupError
    from app.server import serve as run_server

    settings = Settings.from_env(host=host, port=port, workers=workers, database_url=database_url)
    try:
        run_server(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option(
    "--workers", envvar="JOBCHAIN_WORKERS", type=int, default=None, help="Worker threads."
)
@click.option(
    "--database-url",
    envvar="JOBCHAIN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db.",
)
def worker(workers: int | None, database_url: str | None) -> None:
    """Run jobs (and housekeeping and schedules) without an API; run as many as you like."""
    from app.runner.process_setup import StartupError
    from app.runner.worker_process import run_worker

    settings = Settings.from_env(workers=workers, database_url=database_url)
    try:
        run_worker(settings)
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Give up after this many seconds.",
)
@click.pass_obj
def ready(client: ApiClient, timeout: float) -> None:
    """Wait until the service answers and its database is up (after `make run &`, say).

    Exits 0 once it does, 1 if it still does not at --timeout. A first start has saved its
    admin token by then.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            client.health()
            break
        except (ApiUnavailable, ApiClientError) as exc:
            if time.monotonic() + delay > deadline:
                hint = f"\n  {exc.hint}" if exc.hint else ""
                raise click.ClickException(f"not ready after {timeout:g} s: {exc}{hint}") from None
        time.sleep(delay)
        delay = min(1.0, delay * 2)
    click.echo(f"jobchain at {client.base_url} is ready")


SERVICE_COMMANDS = (serve, worker, ready)
