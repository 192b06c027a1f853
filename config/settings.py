"""Every tunable of jobchain in one frozen dataclass, read from ``JOBCHAIN_*`` variables.

The configuration table in docs/operations/configuration.md mirrors the fields below; keep
them in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path("var")
# The directory holding this package: the checkout `make run` runs in (an editable install).
CHECKOUT_DIR = Path(__file__).resolve().parents[1]


def _default_database_url() -> str:
    return f"sqlite:///{DEFAULT_DATA_DIR / 'jobchain.db'}"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. ``from_env`` fills it from ``JOBCHAIN_<FIELD>`` variables."""

    database_url: str = field(default_factory=_default_database_url)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 4
    # Python modules that register user job types (comma-separated in the environment).
    job_modules: tuple[str, ...] = ()
    # Payload limits.
    max_body_bytes: int = 1024 * 1024
    max_depth: int = 10_000
    max_nodes: int = 10_000
    # Leases: a running job's lease is renewed every lease_seconds / 3 by its worker.
    lease_seconds: float = 30.0
    reap_interval_seconds: float = 5.0
    # On SIGTERM: stop claiming, hand back unstarted jobs, let running ones finish this long.
    shutdown_grace_seconds: float = 10.0
    # Fallback wake-up for workers; dispatch itself is event-driven, this only guards
    # against jobs made claimable by another process sharing the database.
    idle_poll_seconds: float = 1.0
    # PostgreSQL: wake idle workers of other processes with LISTEN/NOTIFY. Turn off only
    # where LISTEN cannot work (a transaction-pooling proxy); idle_poll_seconds then rules.
    listen_notify: bool = True
    # How long a call keeps retrying a locked (SQLite) or unreachable (PostgreSQL)
    # database before giving up: API requests then answer 503 with Retry-After; worker,
    # housekeeping and schedule threads log, back off and carry on.
    request_db_wait_seconds: float = 5.0
    background_db_wait_seconds: float = 60.0
    # Finished chains older than this are deleted by housekeeping (0: keep forever).
    retention_days: float = 14.0
    # Automatic retries (maxAttempts > 1): delay = base * 2 ** (attempt - 1), capped.
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 600.0
    log_tail_bytes: int = 64 * 1024
    # Integration systems. Tokens seeded from the environment: "role:token,role:token".
    api_tokens: tuple[str, ...] = ()
    # Shared secrets for callback signatures; two may be active during a rotation.
    callback_secrets: tuple[str, ...] = ()
    # Base URL external systems use to reach this service (for callback URLs).
    public_url: str = ""
    idempotency_ttl_seconds: float = 24 * 3600.0
    # SQLite only: synchronous=NORMAL in WAL mode is durable across process crashes
    # (not across power loss); FULL adds an fsync per commit.
    sqlite_synchronous: str = "NORMAL"
    # Bring the database schema to this release's revision at start (under a lock, so many
    # processes may start at once). Off: deployments run `jobchain db upgrade` themselves
    # and a process refuses to start on any other revision.
    auto_migrate: bool = True
    # GET /metrics: empty means open to loopback clients only; set, a bearer token is needed.
    metrics_token: str = ""
    # Alerts (docs/operations/monitoring.md): how often the dispatcher looks for new events
    # and due deliveries, and how a failed delivery is retried (base * 2 ** (n - 1), capped)
    # before it is recorded as failed for good.
    notify_poll_seconds: float = 1.0
    notify_retry_base_seconds: float = 2.0
    notify_retry_max_seconds: float = 300.0
    notify_max_attempts: int = 30
    notify_timeout_seconds: float = 10.0
    # Declarative automation (docs/automation.md): how often each model's reconciliation
    # tick runs, and after how many failed automated runs in a row an asset is held.
    automation_tick_seconds: float = 30.0
    automation_max_failures: int = 3
    # E-mail alerts go through this SMTP server.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "jobchain@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``JOBCHAIN_*`` variables, then explicit overrides (e.g. CLI flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"JOBCHAIN_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.type, raw)
        settings = cls(**values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given) if given else settings


def _parse(type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if raw.strip().lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.strip().lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
