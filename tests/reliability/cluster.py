"""Real processes for the battery: a throw-away database, an API node, worker processes.

Everything runs as an operator would run it: ``gunicorn wsgi:app`` (the API-only node) and
``jobchain worker`` processes from the repository root, configured only by ``JOBCHAIN_*``
variables. Each process writes its output to a file in the scenario's work directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from app.runtime import Runtime
from config import Settings
from tests.helpers import wait_until
from tests.reliability.jobtypes import JOURNAL_ENV

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFAULT_POSTGRES = os.environ.get(
    "JOBCHAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOKEN = "battery-admin-token"
# How often a wait polls: the conditions read files, logs and the database.
POLL = 0.05
JOB_MODULE = "tests.reliability.jobtypes"
WORKER_READY = "jobchain worker ready"
GUNICORN_URL = re.compile(r"Listening at: (http://\S+)")
# Short leases so a dead worker's jobs come back within seconds.
FAST = {
    "JOBCHAIN_LEASE_SECONDS": "2",
    "JOBCHAIN_REAP_INTERVAL_SECONDS": "0.5",
    "JOBCHAIN_IDLE_POLL_SECONDS": "0.5",
    "JOBCHAIN_RETRY_BASE_SECONDS": "0.05",
    "JOBCHAIN_RETRY_MAX_SECONDS": "0.5",
    "JOBCHAIN_SHUTDOWN_GRACE_SECONDS": "5",
}


class Proc:
    """A child process with its output in ``<workdir>/<name>.log``."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.popen = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def found() -> re.Match[str] | None:
            match = regex.search(self.output())
            if match is None and not self.alive():
                raise RuntimeError(f"{self.name} exited {self.popen.returncode}:\n{self.tail()}")
            return match

        return wait_until(found, timeout, POLL, f"{self.name} to print {regex.pattern!r}")

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL (also wakes a stopped process) and reap it."""
        self.signal(signal.SIGKILL)
        self.popen.wait(30)
        self._log.close()

    def terminate(self) -> None:
        """SIGTERM once (a second one would end a worker's graceful stop at once)."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """The exit status; SIGKILL if the process does not end in time."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.popen.returncode
        self._log.close()
        return code

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status."""
        self.terminate()
        return self.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


@dataclass
class Cluster:
    """One scenario's world: a fresh database (SQLite file or PostgreSQL database), a journal
    for the BATTERY job type, and the processes started on them."""

    database: str  # "sqlite" or "postgresql"
    postgres_url: str = DEFAULT_POSTGRES
    settings: dict[str, str] = field(default_factory=dict)  # extra JOBCHAIN_* values
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="reliability-")))
    url: str = ""
    procs: list[Proc] = field(default_factory=list)
    _pg_name: str | None = None
    _count: int = 0

    def __enter__(self) -> Cluster:
        if self.database == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'jobchain.db'}"
        else:
            self._pg_name = f"reliability_{uuid.uuid4().hex[:10]}"
            with admin_connection(self.postgres_url) as conn:
                conn.execute(text(f'CREATE DATABASE "{self._pg_name}"'))
            server = make_url(self.postgres_url).set(database=self._pg_name)
            self.url = server.render_as_string(hide_password=False)
        # The schema exactly as a starting process makes it, before any process starts.
        runtime = Runtime.create(Settings.from_env(self.env(), job_modules=(JOB_MODULE,)))
        runtime.db.dispose()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.kill()
        if self._pg_name is not None:
            with admin_connection(self.postgres_url) as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))

    def cleanup(self) -> None:
        """Remove the work directory (kept when a scenario failed, for its logs)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def journal(self) -> Path:
        return self.workdir / "journal.log"

    @property
    def pg_database(self) -> str | None:
        return self._pg_name

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCHAIN_")}
        env.update(FAST)
        env.update(
            JOBCHAIN_DATABASE_URL=self.url,
            JOBCHAIN_JOB_MODULES=JOB_MODULE,
            JOBCHAIN_API_TOKENS=f"admin:{TOKEN}",
            **{JOURNAL_ENV: str(self.journal)},
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}-{self._count}"

    def start_api(self) -> tuple[Proc, str]:
        """An API-only node (``gunicorn wsgi:app``); returns it and its base URL once healthy."""
        command = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "1"]
        command += ["--threads", "8", "--no-control-socket", "--timeout", "120"]
        # gunicorn closes a connection idle for its keep-alive (2 s by default) on a timer; a
        # request a client sends on it at that instant gets no answer at all, an HTTP/1.1
        # race of every client that reuses connections, not the server failing. No scenario
        # leaves a connection idle for 75 s, so "no answer" here means the server's fault.
        command += ["--keep-alive", "75", "--graceful-timeout", "2", "wsgi:app"]
        proc = Proc(self._name("api"), command, self.env(), self.workdir)
        self.procs.append(proc)
        base = proc.wait_for(GUNICORN_URL).group(1)
        wait_until(lambda: _healthy(base), 60, POLL, f"{proc.name} to answer /health")
        return proc, base

    def start_workers(self, count: int, threads: int = 2) -> list[Proc]:
        """``count`` workers started together; returns once all are ready."""
        procs = [self.start_worker(threads, ready=False) for _ in range(count)]
        for proc in procs:
            proc.wait_for(WORKER_READY)
        return procs

    def start_worker(self, threads: int = 2, ready: bool = True, **extra: str) -> Proc:
        """``jobchain worker``; waits for its ready line unless ``ready`` is false."""
        command = [str(BIN / "jobchain"), "worker", "--workers", str(threads)]
        proc = Proc(self._name("worker"), command, self.env(**extra), self.workdir)
        self.procs.append(proc)
        if ready:
            proc.wait_for(WORKER_READY)
        return proc


@contextmanager
def admin_connection(url: str) -> Iterator[Connection]:
    """An autocommit connection to the server's maintenance database."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False
