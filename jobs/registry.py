"""The job type registry: TYPE name -> the function that does the work.

A job type is a plain function ``fn(ctx: JobContext) -> result`` where ``result`` is a
small JSON value stored on the job. Register it with ``@job_type("NAME")`` in a module
listed in ``JOBCHAIN_JOB_MODULES``; ``params=`` a marshmallow schema declares its
parameters (``jobs/params.py``), so a bad one is refused at submission, not at run time.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError

from jobs.context import JobContext, JobFailed
from jobs.params import as_schema, problems

JobFunction = Callable[[JobContext], Any]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class JobType:
    name: str
    function: JobFunction
    description: str
    # The API role a token needs to submit this type: SHELL runs commands on this machine,
    # so it is admin-only; most types are fine for any submitter.
    role: str = "submitter"
    # The parameters' schema; None takes any object as it is.
    params: Schema | None = None

    def run(self, ctx: JobContext) -> Any:
        """Call the function with the parameters loaded by the schema (typed, defaults
        filled in). Submission checked them already; a job stored before its type's schema
        changed fails here with the reason instead of deep inside the function."""
        if self.params is not None:
            try:
                ctx.parameters = self.params.load(ctx.parameters)
            except ValidationError:
                found = problems(self.params, ctx.parameters)
                text = "; ".join(
                    f"parameters{'.' + path if path else ''}: {' '.join(messages)}"
                    for path, messages in found.items()
                )
                raise JobFailed(f"invalid parameters: {text}") from None
        return self.function(ctx)

    def check(self, parameters: Any) -> dict[str, list[str]]:
        """What the schema refuses in ``parameters``, by path within them (empty: fine)."""
        return {} if self.params is None else problems(self.params, parameters)


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        run: JobFunction,
        description: str = "",
        role: str = "submitter",
        params: type[Schema] | Schema | None = None,
    ) -> JobType:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid job type name {name!r}")
        doc = description or (run.__doc__ or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        job = JobType(name, run, text, role, as_schema(params))
        with self._lock:
            existing = self._types.get(name)
            if existing is not None and existing.function is not run:
                raise ValueError(f"job type {name!r} is already registered")
            self._types[name] = job
        return job

    def job_type(
        self,
        name: str,
        description: str = "",
        role: str = "submitter",
        params: type[Schema] | Schema | None = None,
    ) -> Callable[[JobFunction], JobFunction]:
        """Decorator form of :meth:`register`."""

        def decorate(run: JobFunction) -> JobFunction:
            self.register(name, run, description, role, params)
            return run

        return decorate

    def check_parameters(self, name: str, parameters: Any) -> dict[str, list[str]]:
        """What type ``name``'s schema refuses in ``parameters`` (empty: fine or unknown)."""
        job = self._types.get(name)
        return {} if job is None else job.check(parameters)

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
