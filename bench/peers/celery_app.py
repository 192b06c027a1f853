"""Celery with Redis as broker and result backend, under the peer workloads.

This module is both the Celery app (``celery -A bench.peers.celery_app worker``) and its
runner (``python -m bench.peers.celery_app``, inside ``bench/.peers-venv``).

* Workers: one ``celery worker --pool prefork --concurrency 2`` (two pool processes execute
  tasks, plus the consumer process), product defaults otherwise (prefetch multiplier 4,
  acks on receipt, results stored).
* Chain: ``chain(noop.si(k0), noop.si(k1), ...)`` applied once (immutable signatures: the same
  payload as a flat job; each message carries the rest of the chain, as Celery does).
* Join: ``chord([noop.si(p0), ...], noop.si(join))``, the Redis backend's native chord
  counter.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from celery import Celery, chain, chord

from bench.peers.measure import Runner, main, record

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
QUEUE = "bench"

app = Celery("bench_peers", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(key: str) -> None:
    start = time.time()
    end = time.time()
    record(key, start, end)


class CeleryRunner(Runner):
    layout = "1 `celery worker --pool prefork --concurrency 2` (2 pool processes + consumer)"
    chain_how = "celery.chain of immutable signatures, applied once"
    join_how = "celery.chord(group of N, join), Redis backend chord counter"

    def setup(self) -> None:
        import redis

        self.redis = redis.Redis.from_url(self.ctx.redis_url)
        self.redis.flushdb()
        app.conf.broker_url = self.ctx.redis_url
        app.conf.result_backend = self.ctx.redis_url

    def teardown(self) -> None:
        self.redis.flushdb()

    def versions(self) -> dict[str, str]:
        import celery
        import kombu
        import redis

        server = self.redis.info("server")["redis_version"]
        return {
            "celery": celery.__version__,
            "kombu": kombu.__version__,
            "redis-py": redis.__version__,
            "redis": server,
        }

    def start_workers(self) -> None:
        celery_bin = str(Path(sys.executable).with_name("celery"))
        self.workers.start(
            "celery",
            [
                celery_bin,
                "-A",
                "bench.peers.celery_app",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "--queues",
                QUEUE,
                "--loglevel",
                "WARNING",
                "--hostname",
                "bench@%h",
            ],
            self.worker_env("c:{pid}", {"BENCH_REDIS_URL": self.ctx.redis_url}),
        )

    def submit_flat(self, keys: list[str]) -> None:
        for key in keys:
            noop.delay(key)

    def submit_chain(self, keys: list[str]) -> None:
        chain(*[noop.si(k) for k in keys]).apply_async()

    def submit_join(self, parents: list[str], join: str, tag: str) -> None:
        chord([noop.si(p) for p in parents], noop.si(join)).apply_async()


RUNNER = CeleryRunner

if __name__ == "__main__":
    sys.exit(main(RUNNER))
