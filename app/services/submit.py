"""Submitting a chain, whoever submits it: ``POST /api/v1/jobs``, the console's submit page
and its "re-run from here", and every schedule fire.

The policy is one pipeline: parse the payload (``app/domain/payload.py``, with the configured
limits, the registered job types and their parameter schemas), plan its joins
(``app/domain/join_plan.py``), check that the submitter's role may submit every job type in it
(``app/security/roles.py``), store the tree in one transaction (``app/store/submission.py``;
with an Idempotency-Key, ``app/store/idempotency.py``). Each step raises what its caller
turns into an answer: PayloadError (400), RoleDenied (403), JoinConflict (409),
idempotency.KeyReused (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from app.domain.join_plan import JoinPlan, plan_joins
from app.domain.payload import JobSpec, Limits, PayloadError, parse_tree
from app.runtime import Runtime
from app.security.roles import allows
from app.store import idempotency, submission
from app.store.database import Database
from config import Settings
from jobs.registry import Registry


class RoleDenied(PayloadError):
    """A job type in the tree needs a higher role than the submitter's (HTTP 403);
    ``details`` names each such node's targetObject."""

    def __init__(self, role: str, details: dict[str, list[str]]):
        super().__init__(f"this token's role is {role}", details, status=403)
        self.role = role


class CheckedChain(NamedTuple):
    """A payload that passed parsing and join planning: ready to store."""

    root: JobSpec
    joins: list[JoinPlan]


@dataclass(frozen=True)
class IdempotentRequest:
    """An Idempotency-Key and the body it was sent with: the same pair stores one chain."""

    key: str
    body: Any


@dataclass(frozen=True)
class Submitted:
    root_id: int
    # True when an earlier request with the same Idempotency-Key and body stored the chain.
    replayed: bool = False


@dataclass(frozen=True)
class SubmitService:
    db: Database
    registry: Registry
    settings: Settings

    @classmethod
    def for_runtime(cls, rt: Runtime) -> SubmitService:
        return cls(rt.db, rt.registry, rt.settings)

    @property
    def limits(self) -> Limits:
        return Limits(max_depth=self.settings.max_depth, max_nodes=self.settings.max_nodes)

    def check(self, payload: Any, limits: Limits | None = None) -> CheckedChain:
        """Parse ``payload`` and plan its joins, storing nothing (raises PayloadError).
        ``limits`` replaces the configured ones (a run's generated chain)."""
        root = parse_tree(
            payload,
            limits or self.limits,
            lambda name: name in self.registry,
            self.registry.check_parameters,
        )
        return CheckedChain(root, plan_joins(root))

    def authorize(self, chain: CheckedChain, role: str) -> CheckedChain:
        """``chain`` if ``role`` may submit every job type in it, else RoleDenied (e.g. SHELL
        needs admin)."""
        denied: dict[str, list[str]] = {}
        for node in chain.root.walk():
            job_type = self.registry.get(node.job_type)
            if job_type is not None and not allows(role, job_type.role):
                path = f"{node.path}.targetObject" if node.path else "targetObject"
                denied[path] = [f"job type {job_type.name} needs the {job_type.role} role"]
        if denied:
            raise RoleDenied(role, denied)
        return chain

    def prepare(self, payload: Any, role: str, limits: Limits | None = None) -> CheckedChain:
        """Everything but storing: check, then authorize. A schedule fire (or a run) stores
        the result itself, in the transaction that records the fire (or the run)."""
        return self.authorize(self.check(payload, limits), role)

    def store(self, chain: CheckedChain, idempotent: IdempotentRequest | None = None) -> Submitted:
        """Store an authorized chain (raises JoinConflict, or KeyReused for a key sent
        before with another body)."""
        if idempotent is None:
            return Submitted(submission.submit(self.db, chain.root, chain.joins))
        stored = idempotency.submit_once(
            self.db,
            chain.root,
            chain.joins,
            idempotent.key,
            idempotency.body_hash(idempotent.body),
            self.settings.idempotency_ttl_seconds,
        )
        return Submitted(stored.root_id, stored.replayed)

    def submit(
        self, payload: Any, role: str, idempotent: IdempotentRequest | None = None
    ) -> Submitted:
        """The whole pipeline: check, authorize, store."""
        return self.store(self.prepare(payload, role), idempotent)
