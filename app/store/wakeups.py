"""Cross-process wake-ups on PostgreSQL: NOTIFY after a commit, one LISTEN thread per process.

A commit that makes jobs claimable wakes this process's idle workers directly; other
processes (other machines) learn of it through ``pg_notify``. Each process keeps one
dedicated autocommit connection that LISTENs and hands every notification to its in-process
listeners, so a child released on machine A starts on machine B within milliseconds instead
of after B's idle poll. Notifications are an accelerator only: one that is lost (a dropped
connection, a crash right after the commit) costs at most ``idle_poll_seconds``, and after
the listener reconnects it wakes everyone once because it may have missed some.

Payloads are ``"<origin>:<count>"``; a process ignores its own, having woken itself already.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("jobchain.wakeups")

_NOTIFY = text("SELECT pg_notify(:channel, :payload)")

CHANNEL = "jobchain_dispatch"
# Listener connections carry this application_name prefix (visible in pg_stat_activity).
APPLICATION_NAME = "jobchain-listen"
# How long one wait for notifications lasts before the stop flag is checked again.
WAIT_SECONDS = 5.0
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0

Deliver = Callable[[int | None], None]


class PgWakeups:
    """Sends and receives dispatch notifications for one process's :class:`Database`."""

    def __init__(self, engine: Engine, deliver: Deliver) -> None:
        self._engine = engine
        self._deliver = deliver
        self.origin = uuid.uuid4().hex[:12]
        self._stopping = threading.Event()
        # select() wakes on this pair when stop() is called.
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- sending -------------------------------------------------------------------------

    def send(self, count: int | None) -> None:
        """Tell other processes that ``count`` jobs (None: an unknown number) became claimable.

        Called right after the commit: a failure here loses nothing but speed.
        """
        payload = f"{self.origin}:{'' if count is None else count}"
        try:
            with self._engine.connect() as conn:
                conn.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload})
                conn.commit()
        except Exception as exc:  # the commit it announces is done; the poll covers it
            log.warning("could not notify other processes: %s", _first_line(exc))

    # -- listening -------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="jobchain-listen", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # stuck connecting: a daemon thread; leave its sockets open
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        import psycopg  # here, not at import: a process on SQLite never loads the driver

        delay = RECONNECT_MIN_SECONDS
        first = True
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = RECONNECT_MIN_SECONDS
                    if not first:
                        log.info("listening for wake-ups again")
                        self._deliver(None)  # notifications may have been lost meanwhile
                    first = False
                    self._listen(conn)
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning(
                    "wake-up listener lost its connection (%s); retry in %.1fs",
                    _first_line(exc),
                    delay,
                )
                first = False
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            except Exception:  # a bug must not end wake-ups for good
                log.exception("wake-up listener failed")
                self._stopping.wait(RECONNECT_MAX_SECONDS)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        """Block on the connection's socket and on the stop pair; hand notifications over."""
        while not self._stopping.is_set():
            stop_fd = self._wake_r.fileno()
            ready, _, _ = select.select([conn.fileno(), stop_fd], [], [], WAIT_SECONDS)
            if stop_fd in ready:
                return
            if not self._drain(conn):
                # Readable with nothing to hand over, or quiet for WAIT_SECONDS: a dead
                # or half-open connection raises here instead of failing silently.
                conn.execute("SELECT 1")
                self._drain(conn)  # what arrived during the probe

    def _drain(self, conn: psycopg.Connection[Any]) -> int:
        count = 0
        for note in conn.notifies(timeout=0):
            count += 1
            self._handle(note.payload)
        return count

    def _handle(self, payload: str) -> None:
        origin, _, count = payload.partition(":")
        if origin == self.origin:
            return
        self._deliver(int(count) if count.isdigit() else None)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        url = self._engine.url
        cargs, cparams = self._engine.dialect.create_connect_args(url)
        params = {
            **cparams,
            "autocommit": True,
            "application_name": f"{APPLICATION_NAME}:{self.origin}",
            # Notice a silently dead peer (a pulled cable) within about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "connect_timeout": 10,
        }
        return psycopg.connect(*cargs, **params)


def _first_line(exc: BaseException) -> str:
    """Driver messages run over several lines; a log line needs the first."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
