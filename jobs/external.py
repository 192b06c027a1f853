"""EXTERNAL job type: hand a job to an integration system and let its callback end it.

The function only notifies: it POSTs the job (id, parameters, attempt, callback URL) to
``parameters.notifyUrl``, retrying with backoff, and returns :data:`AWAIT_CALLBACK`. The
worker then hands the job's lease to its callback deadline (``app/store/external.py``), so no
thread waits while the external system works; a signed callback to the callback URL ends
the job, and ``parameters.timeoutSeconds`` without one fails it.
"""

from __future__ import annotations

import threading
from typing import Any

from marshmallow import fields, validate

from jobs.context import JobContext, JobFailed
from jobs.params import MAX_SECONDS, AnyParameters, Number, StringMap
from jobs.registry import job_type

NOTIFY_TRIES = 5
NOTIFY_BACKOFF_SECONDS = 0.5  # doubled after each failed try: 0.5, 1, 2, 4 s
NOTIFY_TIMEOUT_SECONDS = 10.0


class AwaitCallback:
    """Returned by an EXTERNAL job: it ends by callback or deadline, not by returning."""

    def __repr__(self) -> str:
        return "AWAIT_CALLBACK"


AWAIT_CALLBACK = AwaitCallback()


class CallbackBase:
    """Where integration systems reach this service: ``public_url`` when configured, else
    the address this process listens on (fine when they share a network with it). Never a
    request's Host header, which any caller controls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._public_url = ""
        self._listen_url = ""

    def configure(self, public_url: str) -> None:
        with self._lock:
            self._public_url = public_url.rstrip("/")

    def listening_on(self, base_url: str) -> None:
        with self._lock:
            self._listen_url = base_url.rstrip("/")

    def callback_url(self, job_id: int) -> str | None:
        with self._lock:
            base = self._public_url or self._listen_url
        return f"{base}/api/v1/jobs/{job_id}/callback" if base else None


# One per process: the API configures it, the EXTERNAL jobs of the same process read it.
CALLBACK_BASE = CallbackBase()


class ExternalParameters(AnyParameters):
    """notifyUrl, timeoutSeconds and headers are jobchain's; any other parameter is passed
    on to the integration system in the notification."""

    notifyUrl = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        error_messages={"invalid": "must be an http:// or https:// URL"},
    )
    timeoutSeconds = Number(
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_SECONDS),
        metadata={
            "description": "fail the job when no callback came within this long",
            "exclusiveMinimum": True,
        },
    )
    headers = StringMap(metadata={"description": "sent with the notification"})


@job_type("EXTERNAL", role="integration", params=ExternalParameters)
def external(ctx: JobContext) -> AwaitCallback | None:
    """Notifies an integration system (notifyUrl) and waits for its signed callback."""
    url: str = ctx.parameters["notifyUrl"]
    headers: dict[str, str] = ctx.parameters.get("headers", {})
    callback_url = CALLBACK_BASE.callback_url(ctx.job_id)
    if callback_url is None:
        raise JobFailed("no callback URL known: set JOBCHAIN_PUBLIC_URL")
    notification = {
        "jobId": ctx.job_id,
        "rootId": ctx.root_id,
        "targetObject": ctx.target_object,
        "targetId": ctx.target_id,
        "parameters": ctx.parameters,
        "attempt": ctx.attempt,
        "callbackUrl": callback_url,
    }
    # The external system may see a notification twice (a lost answer is retried).
    headers = {**headers, "Idempotency-Key": f"jobchain-{ctx.job_id}-{ctx.attempt}"}
    if not _notify(ctx, url, headers, notification):
        return None  # cancelled or timed out while retrying: the worker ends the job
    ctx.progress(None, "waiting for callback")
    return None if ctx.should_abort() else AWAIT_CALLBACK


def _notify(ctx: JobContext, url: str, headers: dict[str, str], body: dict[str, Any]) -> bool:
    """POST until a 2xx; retry connection errors, 429 and 5xx. False if aborted meanwhile."""
    import requests  # here, not at import: a worker process loads requests only if needed

    problem = ""
    for attempt in range(1, NOTIFY_TRIES + 1):
        try:
            response = requests.post(
                url, json=body, headers=headers, timeout=NOTIFY_TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            with response:
                status = response.status_code
            if 200 <= status < 300:
                ctx.logger.info("notified %s (HTTP %d)", url, status)
                return True
            problem = f"HTTP {status}"
            if status != 429 and status < 500:
                raise JobFailed(f"notifying {url} failed: {problem}")
        ctx.logger.warning("notifying %s failed (try %d): %s", url, attempt, problem)
        if attempt < NOTIFY_TRIES and ctx.wait(NOTIFY_BACKOFF_SECONDS * 2 ** (attempt - 1)):
            return False
    raise JobFailed(f"notifying {url} failed after {NOTIFY_TRIES} tries: {problem}")
