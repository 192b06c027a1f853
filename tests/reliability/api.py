"""Submitting through the real API, as an integration system would, and noting every answer.

A submission is retried with the same ``Idempotency-Key`` after a 503 (waiting its
``Retry-After``, capped), a connection error or a timeout, until it is accepted, so a retry
never stores a chain twice. Every answer is recorded: the invariant checker counts the 5xx.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from tests.reliability.cluster import TOKEN
from tests.reliability.workload import Submission


@dataclass(frozen=True)
class Accepted:
    root_id: int
    submission: Submission


@dataclass
class ApiLog:
    """What the API answered: status counts, and every 5xx or unanswered request."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # 5xx and requests without an answer
    busy: list[str] = field(default_factory=list)  # 503 with Retry-After
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)

    def note(
        self, status: int | None, detail: str, seconds: float, retry_after: str | None = None
    ) -> None:
        """Record one answer (None: none came) that took ``seconds``."""
        with self.lock:
            self.slowest = max(self.slowest, seconds)
            sent = time.monotonic() - seconds - self.started
            detail = f"{detail} (sent at +{sent:.1f} s)"
            if status is None:
                self.failures.append(f"no answer after {seconds:.1f} s: {detail}")
                return
            self.statuses[status] += 1
            if status == 503 and retry_after is not None:
                self.busy.append(detail)
            elif status >= 500:
                self.failures.append(f"{status} after {seconds:.1f} s: {detail}")


class Submitter:
    """Submits to one API node from a few threads; ``accepted`` is the ledger of what the
    API confirmed (one entry per label, however many retries it took)."""

    def __init__(self, base_url: str, timeout: float = 30.0, retry_after_cap: float = 1.0):
        self.base_url = base_url
        self.timeout = timeout
        self.retry_after_cap = retry_after_cap
        self.log = ApiLog()
        self.accepted: list[Accepted] = []
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def submit(self, submission: Submission, give_up_after: float = 300.0) -> int:
        """POST until accepted; returns the root job id."""
        deadline = time.monotonic() + give_up_after
        headers = {"Idempotency-Key": submission.label}
        while True:
            began = time.monotonic()
            try:
                response = self._session().post(
                    f"{self.base_url}/api/v1/jobs",
                    json=submission.payload,
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                self.log.note(None, f"POST {submission.label}: {exc}", time.monotonic() - began)
                pause = 0.2
            else:
                seconds = time.monotonic() - began
                retry_after = response.headers.get("Retry-After")
                detail = f"POST {submission.label}: {response.text[:200]}"
                if retry_after is not None:
                    detail += f" (Retry-After: {retry_after})"
                self.log.note(response.status_code, detail, seconds, retry_after)
                if response.status_code in (200, 201):
                    root_id = int(response.json()["id"])
                    with self._lock:
                        self.accepted.append(Accepted(root_id, submission))
                    return root_id
                if response.status_code < 500:
                    raise RuntimeError(f"rejected {response.status_code}: {detail}")
                pause = min(float(retry_after or 0.2), self.retry_after_cap)
            if time.monotonic() + pause > deadline:
                raise TimeoutError(f"{submission.label} not accepted in {give_up_after:g} s")
            time.sleep(pause)

    def submit_all(
        self, work: list[Submission], seconds: float = 0.0, threads: int = 4
    ) -> list[int]:
        """Submit everything, spread evenly over ``seconds`` (0: as fast as it goes)."""
        start = time.monotonic()
        interval = seconds / len(work) if work and seconds > 0 else 0.0

        def one(index: int) -> int:
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            return self.submit(work[index])

        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, range(len(work))))

    def close(self) -> None:
        for session in self._sessions:
            session.close()
