"""Procrastinate on PostgreSQL under the peer workloads: the app, its tasks, its worker entry
point (:func:`worker_main`) and the runner, all inside ``bench/.peers-venv``.

Procrastinate has no dependency between jobs, so the chain and the join are what its users
write themselves (the figures include this user code, as they would in production):

* Chain: the task defers the next link at its end (``await chain_step.defer_async(i=i + 1)``).
* Join: every parent, at its end, increments a counter row in PostgreSQL
  (``UPDATE bench_join SET done = done + 1 WHERE name = %(name)s RETURNING done``, one atomic
  statement, so exactly one parent sees ``done == expected``) and that parent defers the join
  job. The counter table is the user's, created next to Procrastinate's schema.

The job's ``end`` is taken before it defers anything, as every system's job records its end
before the system reacts to it.

* Workers: two worker processes, ``concurrency=1`` each, ``listen_notify`` on (the default),
  async tasks (Procrastinate's recommended form).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time

import procrastinate

from bench.peers.measure import Runner, create_database, drop_database, main, record

QUEUE = "bench"
CONNINFO_ENV = "BENCH_PG_CONNINFO"
WORKER_COMMAND = (
    "import sys; from bench.peers.procrastinate_app import worker_main; worker_main(sys.argv[1])"
)

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(CONNINFO_ENV, ""))
)


@app.task(name="noop", queue=QUEUE)
async def noop(key: str) -> None:
    start = time.time()
    end = time.time()
    record(key, start, end)


@app.task(name="chain_step", queue=QUEUE)
async def chain_step(prefix: str, i: int, n: int) -> None:
    start = time.time()
    end = time.time()
    record(f"{prefix}{i}", start, end)
    if i + 1 < n:
        await chain_step.defer_async(prefix=prefix, i=i + 1, n=n)


@app.task(name="join_parent", queue=QUEUE)
async def join_parent(key: str, join: str, expected: int) -> None:
    start = time.time()
    end = time.time()
    record(key, start, end)
    row = await app.connector.execute_query_one_async(
        "UPDATE bench_join SET done = done + 1 WHERE name = %(name)s RETURNING done",
        name=join,
    )
    if row["done"] == expected:
        await noop.defer_async(key=join)


def worker_main(name: str) -> None:
    """One worker process: ``concurrency=1``, listening on the benchmark queue."""
    logging.basicConfig(level=logging.WARNING)

    async def run() -> None:
        async with app.open_async():
            await app.run_worker_async(queues=[QUEUE], concurrency=1, name=name)

    asyncio.run(run())


class ProcrastinateRunner(Runner):
    layout = "2 procrastinate worker processes, concurrency=1 each (async tasks)"
    chain_how = "user code: each task defers the next at its end"
    join_how = "user code: parents increment a PostgreSQL counter; the last one defers the join"

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.db_name, self.conninfo = create_database(self.ctx.pg_url, "procrastinate_peers")
        self.stack = contextlib.ExitStack()
        connector = procrastinate.PsycopgConnector(conninfo=self.conninfo)
        self.app = self.stack.enter_context(app.replace_connector(connector))
        self.loop.run_until_complete(self.app.open_async())
        self.loop.run_until_complete(self.app.schema_manager.apply_schema_async())
        self.sql("CREATE TABLE bench_join (name text PRIMARY KEY, done integer NOT NULL DEFAULT 0)")

    def sql(self, query: str, **args: object) -> None:
        self.loop.run_until_complete(self.app.connector.execute_query_async(query, **args))  # type: ignore[arg-type]

    def teardown(self) -> None:
        if hasattr(self, "app"):
            self.loop.run_until_complete(self.app.close_async())
            self.stack.close()
        if hasattr(self, "db_name"):
            drop_database(self.ctx.pg_url, self.db_name)

    def versions(self) -> dict[str, str]:
        import psycopg

        row = self.loop.run_until_complete(
            self.app.connector.execute_query_one_async("SHOW server_version")
        )
        return {
            "procrastinate": procrastinate.__version__,
            "psycopg": psycopg.__version__,
            "postgresql": str(row["server_version"]),
        }

    def start_workers(self) -> None:
        for n in range(2):
            self.workers.start(
                f"procrastinate-{n}",
                [sys.executable, "-c", WORKER_COMMAND, f"w{n}"],
                self.worker_env(f"w{n}", {CONNINFO_ENV: self.conninfo}),
            )

    def submit_flat(self, keys: list[str]) -> None:
        task = noop
        for i in range(0, len(keys), 500):
            self.loop.run_until_complete(
                task.batch_defer_async(*({"key": k} for k in keys[i : i + 500]))
            )

    def submit_chain(self, keys: list[str]) -> None:
        prefix = keys[0][:-1]
        assert keys == [f"{prefix}{i}" for i in range(len(keys))]
        self.loop.run_until_complete(chain_step.defer_async(prefix=prefix, i=0, n=len(keys)))

    def submit_join(self, parents: list[str], join: str, tag: str) -> None:
        self.sql("INSERT INTO bench_join (name) VALUES (%(name)s)", name=join)
        self.loop.run_until_complete(
            join_parent.batch_defer_async(
                *({"key": p, "join": join, "expected": len(parents)} for p in parents)
            )
        )


RUNNER = ProcrastinateRunner

if __name__ == "__main__":
    sys.exit(main(RUNNER))
