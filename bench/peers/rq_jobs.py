"""RQ with Redis under the peer workloads: the job functions and the runner
(``python -m bench.peers.rq_jobs``, inside ``bench/.peers-venv``).

* Workers: two ``rq worker`` processes. ``rq`` uses RQ's default ``Worker``, which forks a
  work-horse process per job; ``rq-simple`` uses ``rq.worker.SimpleWorker`` (runs jobs in the
  worker process itself, RQ's documented faster choice for short jobs).
* Chain: ``enqueue(noop, k_i, depends_on=<job k_{i-1}>)`` for each link.
* Join: ``enqueue(noop, join, depends_on=Dependency(jobs=[<the N parent jobs>]))``.

RQ builds a chain one enqueue call at a time, so a job could end before its dependent is
enqueued (the dependent would then start at once, and the hop would measure this client
instead of RQ). The chain's first job and the join's parents therefore depend on a *gate*
job that blocks (BLPOP) until every job of the submission is enqueued; the gate is not
measured.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import redis
from rq import Queue
from rq.job import Dependency

from bench.peers.measure import Context, Runner, main, record

QUEUE = "bench"
# By name: this module runs as __main__ in the runner, the workers import it by its path.
NOOP = "bench.peers.rq_jobs.noop"
GATE = "bench.peers.rq_jobs.gate"


def noop(key: str) -> None:
    start = time.time()
    end = time.time()
    record(key, start, end)


def gate(release_key: str) -> None:
    """Blocks until the submitting client pushed ``release_key`` (at most 10 minutes).

    Short BLPOPs: redis-py's socket timeout would end one long BLPOP with an error (and a
    failed gate leaves its dependents deferred for ever).
    """
    conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if conn.blpop([release_key], timeout=1):
                return
        except redis.exceptions.TimeoutError:
            continue


class RQRunner(Runner):
    chain_how = "enqueue(..., depends_on=previous job) per link, behind an unmeasured gate job"
    join_how = "enqueue(join, depends_on=Dependency(jobs=[N parents])), behind a gate job"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.simple = ctx.system == "rq-simple"
        worker = "SimpleWorker (no fork)" if self.simple else "Worker (forks a work-horse per job)"
        self.layout = f"2 `rq worker` processes, {worker}"

    def setup(self) -> None:
        self.redis = redis.Redis.from_url(self.ctx.redis_url)
        self.redis.flushdb()
        self.queue = Queue(QUEUE, connection=self.redis)

    def teardown(self) -> None:
        self.redis.flushdb()

    def versions(self) -> dict[str, str]:
        import rq

        return {
            "rq": rq.__version__,
            "redis-py": redis.__version__,
            "redis": self.redis.info("server")["redis_version"],
        }

    def start_workers(self) -> None:
        rq_bin = str(Path(sys.executable).with_name("rq"))
        for n in range(2):
            argv = [rq_bin, "worker", "--url", self.ctx.redis_url, "--quiet"]
            argv += ["--name", f"bench-{n}-{uuid.uuid4().hex[:6]}"]
            if self.simple:
                argv += ["--worker-class", "rq.worker.SimpleWorker"]
            argv.append(QUEUE)
            self.workers.start(
                f"rq-{n}",
                argv,
                self.worker_env(f"w{n}", {"BENCH_REDIS_URL": self.ctx.redis_url}),
            )

    def submit_flat(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 500):
            with self.redis.pipeline() as pipe:
                self.queue.enqueue_many(
                    [Queue.prepare_data(NOOP, (k,)) for k in keys[i : i + 500]], pipeline=pipe
                )
                pipe.execute()

    def _gate(self) -> tuple[object, str]:
        release = f"bench:release:{uuid.uuid4().hex}"
        return self.queue.enqueue(GATE, release), release

    def submit_chain(self, keys: list[str]) -> None:
        previous, release = self._gate()
        for key in keys:
            previous = self.queue.enqueue(NOOP, key, depends_on=previous)
        self.redis.rpush(release, 1)

    def submit_join(self, parents: list[str], join: str, tag: str) -> None:
        first, release = self._gate()
        jobs = [self.queue.enqueue(NOOP, p, depends_on=first) for p in parents]
        self.queue.enqueue(NOOP, join, depends_on=Dependency(jobs=jobs))
        self.redis.rpush(release, 1)


RUNNER = RQRunner

if __name__ == "__main__":
    sys.exit(main(RUNNER))
