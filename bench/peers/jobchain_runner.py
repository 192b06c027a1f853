"""jobchain under the peer workloads: the real ``jobchain serve`` / ``jobchain worker`` processes.

* ``jobchain-sqlite``: one ``jobchain serve --workers 2`` process (2 worker threads; the API,
  housekeeping and scheduler run in it too, as in ``make run``) on a SQLite file (WAL).
* ``jobchain-pg``: two ``jobchain worker --workers 1`` processes on a fresh PostgreSQL
  database (``pg_processes`` x ``pg_threads``; :mod:`bench.scaling` varies them).

Jobs are ``<key>.BENCH`` (:mod:`bench.peers.jobchain_jobs`). Submissions are written by this
runner process straight through the store (``parse_tree`` + ``submission.submit``, the code
behind ``POST /api/v1/jobs``): the API's JSON decoder and the product's depth limit would not
accept a 1,000-deep nested payload. The worker processes therefore learn of a new root through
their cross-process wake-up (their idle poll, ``idle_poll_seconds`` = 1 s, where no
notification exists); only the first job of a submission can wait for it, and no figure
measured here includes it. Chains and joins then run inside the workers.

Run by ``python -m bench.peers`` inside the project's virtualenv.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from app.domain.payload import Limits, parse_tree
from app.runtime import Runtime
from app.store import submission
from bench.peers.measure import Context, Runner, create_database, drop_database, main
from config import Settings

JOB_MODULE = "bench.peers.jobchain_jobs"
JOBCHAIN = str(Path(sys.executable).with_name("jobchain"))


def _pg_sqlalchemy_url(libpq_url: str) -> str:
    return "postgresql+psycopg://" + libpq_url.split("://", 1)[1]


class JobchainRunner(Runner):
    chain_how = "one nested ChainedJobInfo payload (nextJobs), 1 submission"
    join_how = (
        "one payload: root -> N parents, a JOIN node with the same key under each, "
        "the join job under one JOIN node"
    )
    # The PostgreSQL layout: processes x threads each (execution slots = their product).
    pg_processes = 2
    pg_threads = 1
    db_prefix = "jobchain_peers"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pg = ctx.system == "jobchain-pg"
        if self.pg:
            self.layout = (
                f"{self.pg_processes} `jobchain worker --workers {self.pg_threads}` processes"
            )
        else:
            self.layout = "1 `jobchain serve --workers 2` process (2 worker threads)"
        self.db_name: str | None = None
        self.url = ""
        self.runtime: Runtime | None = None
        self.limits = Limits(max_depth=10_000, max_nodes=20_000)

    def setup(self) -> None:
        if self.pg:
            self.db_name, libpq = create_database(self.ctx.pg_url, self.db_prefix)
            self.url = _pg_sqlalchemy_url(libpq)
        else:
            self.url = f"sqlite:///{self.ctx.workdir / 'jobchain.db'}"
        settings = Settings(database_url=self.url, job_modules=(JOB_MODULE,))
        self.runtime = Runtime.create(settings)  # schema; used to submit

    def teardown(self) -> None:
        if self.runtime is not None:
            self.runtime.db.dispose()
        if self.db_name is not None:
            drop_database(self.ctx.pg_url, self.db_name)

    def versions(self) -> dict[str, str]:
        import sqlalchemy

        from bench.core import code_version

        out = {"jobchain": code_version(), "sqlalchemy": sqlalchemy.__version__}
        if self.pg and self.runtime is not None:
            with self.runtime.db.read() as conn:
                out["postgresql"] = str(conn.exec_driver_sql("SHOW server_version").scalar())
        else:
            import sqlite3

            out["sqlite"] = sqlite3.sqlite_version
        return out

    def start_workers(self) -> None:
        env_extra = {"JOBCHAIN_JOB_MODULES": JOB_MODULE}
        if self.pg:
            threads = str(self.pg_threads)
            procs = [
                self.workers.start(
                    f"jobchain-worker-{n}",
                    [JOBCHAIN, "worker", "--workers", threads, "--database-url", self.url],
                    self.worker_env(f"w{n}" if threads == "1" else f"w{n}:{{thread}}", env_extra),
                )
                for n in range(self.pg_processes)
            ]
            for proc in procs:
                self.workers.wait_output(proc, "jobchain worker ready")
        else:
            env_extra["JOBCHAIN_API_TOKENS"] = f"admin:bench-{secrets.token_hex(8)}"
            proc = self.workers.start(
                "jobchain-serve",
                [
                    JOBCHAIN,
                    "serve",
                    "--workers",
                    "2",
                    "--port",
                    "0",
                    "--database-url",
                    self.url,
                ],
                self.worker_env("t:{thread}", env_extra),
            )
            self.workers.wait_output(proc, "jobchain API listening")

    def _submit(self, body: dict[str, Any]) -> None:
        assert self.runtime is not None
        registry = self.runtime.registry
        spec = parse_tree(body, self.limits, lambda name: name in registry)
        submission.submit(self.runtime.db, spec)

    def submit_flat(self, keys: list[str]) -> None:
        """Independent roots, 500 per transaction (the backlog is built before the workers
        start; how fast it is stored is not measured)."""
        assert self.runtime is not None
        registry = self.runtime.registry
        specs = [
            parse_tree({"targetObject": f"{key}.BENCH"}, self.limits, lambda n: n in registry)
            for key in keys
        ]
        for i in range(0, len(specs), 500):
            chunk = specs[i : i + 500]
            self.runtime.db.write(
                lambda conn, chunk=chunk: [submission.insert_tree(conn, s, []) for s in chunk]
            )
        self.runtime.db.notify_dispatchable()

    def submit_chain(self, keys: list[str]) -> None:
        node: dict[str, Any] = {"targetObject": f"{keys[-1]}.BENCH"}
        for key in reversed(keys[:-1]):
            node = {"targetObject": f"{key}.BENCH", "nextJobs": [node]}
        self._submit(node)

    def submit_join(self, parents: list[str], join: str, tag: str) -> None:
        join_node = {"targetObject": f"jk{tag}.JOIN"}
        last = {"targetObject": f"jk{tag}.JOIN", "nextJobs": [{"targetObject": f"{join}.BENCH"}]}
        self._submit(
            {
                "targetObject": f"r{tag}.BENCH",
                "nextJobs": [
                    {
                        "targetObject": f"{key}.BENCH",
                        "nextJobs": [last if i == len(parents) - 1 else join_node],
                    }
                    for i, key in enumerate(parents)
                ],
            }
        )


RUNNER = JobchainRunner

if __name__ == "__main__":
    sys.exit(main(RUNNER))
