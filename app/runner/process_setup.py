"""What every jobchain process does first: logging, and loading the user's job modules.

Shared by ``jobchain serve`` (app/server.py) and ``jobchain worker``; imports no web stack.
"""

from __future__ import annotations

import logging
import os
import sys

from jobs import REGISTRY


class StartupError(Exception):
    """The process cannot start (bad configuration); the message says what to fix."""


def load_job_modules(modules: tuple[str, ...]) -> None:
    """Import the user's job modules, resolving them from the current directory too.

    A console script's ``sys.path`` starts with its own bin directory, not the working
    directory, so ``JOBCHAIN_JOB_MODULES=examples.pricing_jobs`` would not import from a
    checkout; ``python -m`` puts the working directory first, and so do we.
    """
    if not modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        try:
            REGISTRY.load_modules([module])
        except Exception as exc:
            raise StartupError(
                f"cannot load job module {module!r} (JOBCHAIN_JOB_MODULES): "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
