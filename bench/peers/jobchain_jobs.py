"""The benchmark's no-op job type for jobchain (loaded with JOBCHAIN_JOB_MODULES).

``<key>.BENCH``: records its own start and end under ``<key>``, like every peer's no-op task.
"""

from __future__ import annotations

import time
from typing import Any

from bench.peers.measure import record
from jobs import JobContext, job_type


@job_type("BENCH")
def bench_noop(ctx: JobContext) -> Any:
    """No-op that records its start and end time for the peer benchmark."""
    start = time.time()
    end = time.time()
    record(ctx.target_id or "", start, end)
    return None
