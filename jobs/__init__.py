"""Job types. Importing this package registers the built-in ones."""

from jobs import builtin, external, http, shell  # noqa: F401  (registration side effect)
from jobs.context import JobContext, JobFailed
from jobs.registry import REGISTRY, Registry, job_type

__all__ = ["REGISTRY", "JobContext", "JobFailed", "Registry", "job_type"]
