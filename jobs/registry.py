"""The job type registry: TYPE name -> the function that does the work.

A job type is a plain function ``fn(ctx: JobContext) -> result`` where ``result`` is a
small JSON value stored on the job. Register it with ``@job_type("NAME")`` in a module
listed in ``JOBCHAIN_JOB_MODULES``.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jobs.context import JobContext

JobFunction = Callable[[JobContext], Any]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class JobType:
    name: str
    run: JobFunction
    description: str
    # The API role a token needs to submit this type: SHELL runs commands on this machine,
    # so it is admin-only; most types are fine for any submitter.
    role: str = "submitter"


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._lock = threading.Lock()

    def register(
        self, name: str, run: JobFunction, description: str = "", role: str = "submitter"
    ) -> JobType:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid job type name {name!r}")
        doc = description or (run.__doc__ or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        job = JobType(name=name, run=run, description=text, role=role)
        with self._lock:
            existing = self._types.get(name)
            if existing is not None and existing.run is not run:
                raise ValueError(f"job type {name!r} is already registered")
            self._types[name] = job
        return job

    def job_type(
        self, name: str, description: str = "", role: str = "submitter"
    ) -> Callable[[JobFunction], JobFunction]:
        """Decorator form of :meth:`register`."""

        def decorate(run: JobFunction) -> JobFunction:
            self.register(name, run, description, role)
            return run

        return decorate

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def all(self) -> list[JobType]:
        return sorted(self._types.values(), key=lambda t: t.name)

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import user modules; their ``@job_type`` decorators register into REGISTRY."""
        for module in modules:
            importlib.import_module(module)


REGISTRY = Registry()
job_type = REGISTRY.job_type
