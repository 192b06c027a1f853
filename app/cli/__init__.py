"""The ``jobchain`` command, one module per command group: ``root`` (the group, --url and
--token), ``service`` (serve, worker), ``jobs`` (submit, status, cancel, ...), ``schedules``,
``models`` and ``deps`` (dependency graphs; ``model_runs`` and ``automation`` add
``models run``, ``status`` and ``why``), ``tokens`` and ``db``; ``client`` is the HTTP
client of the API the commands call and ``shared`` what the groups share. Modules here may
import click, requests, ``app.store`` (the ``tokens`` and ``db`` commands work on the
database directly), ``app.security``, ``app.domain.statuses`` and ``config``; ``service`` imports
the server modules only when its commands run. Nothing in the service imports this package.
"""

from app.cli.root import cli, main

__all__ = ["cli", "main"]
