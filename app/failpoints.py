"""Failpoints: named places where a crash test can make this process exit on purpose.

Why this exists: jobchain promises that no job is lost, doubled or chained twice whatever
moment a process dies. Killing a process from outside (``kill -9``) only hits random moments;
the dangerous ones (between a claim and the job's start, inside the finish transaction right
before its commit, just after it, in the middle of a join arrival) are a few microseconds
wide. Like the failpoints of TiKV or FoundationDB's simulation, the code marks those
moments with ``failpoint("name")`` and the reliability battery (``tests/reliability``)
starts workers that exit exactly there.

Off unless the process is started with ``JOBCHAIN_FAILPOINTS``, read once at import::

    JOBCHAIN_FAILPOINTS=after_claim                      exit the first time it is reached
    JOBCHAIN_FAILPOINTS=mid_join:3                       exit the third time
    JOBCHAIN_FAILPOINTS=mid_job:0.2,after_claim:5        exit with probability 0.2 each time;
                                                         several points, comma-separated

Exiting is ``os._exit`` with :data:`EXIT_CODE` (no cleanup, no ``finally``, no commit: a
crash), after one line on stderr naming the point. Without the variable a call costs one
dictionary truth test.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass

ENV = "JOBCHAIN_FAILPOINTS"
# The exit status of a process ended by a failpoint, so a harness can tell it from a failure.
EXIT_CODE = 77


@dataclass
class _Rule:
    nth: int = 1  # exit the nth time the point is reached
    probability: float | None = None  # or: exit each time with this probability
    seen: int = 0

    def fires(self) -> bool:
        if self.probability is not None:
            return random.random() < self.probability
        self.seen += 1
        return self.seen == self.nth


def parse(spec: str) -> dict[str, _Rule]:
    """``name[:probability|:count],...`` -> rules; raises ValueError on a bad spec."""
    rules: dict[str, _Rule] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, arg = item.partition(":")
        if not arg:
            rules[name] = _Rule()
        elif "." in arg:
            probability = float(arg)
            if not 0.0 < probability <= 1.0:
                raise ValueError(f"{ENV}: probability of {name!r} must be in (0, 1]: {arg}")
            rules[name] = _Rule(probability=probability)
        else:
            count = int(arg)
            if count < 1:
                raise ValueError(f"{ENV}: count of {name!r} must be at least 1: {arg}")
            rules[name] = _Rule(nth=count)
    return rules


_RULES = parse(os.environ.get(ENV, ""))
_LOCK = threading.Lock()


def failpoint(name: str) -> None:
    """Exit the process here if ``JOBCHAIN_FAILPOINTS`` arms ``name`` and its rule says so."""
    if not _RULES:
        return
    rule = _RULES.get(name)
    if rule is None:
        return
    with _LOCK:
        if not rule.fires():
            return
        os.write(2, f"jobchain failpoint {name}: exiting pid {os.getpid()}\n".encode())
        os._exit(EXIT_CODE)
