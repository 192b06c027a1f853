"""The bounded tail of a job's log: new text is appended, the oldest bytes fall off."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from app.store.tables import job_logs


def append_log(conn: Connection, job_id: int, text: str, limit_bytes: int) -> None:
    """Append ``text`` to the job's log, keeping at most ``limit_bytes`` (UTF-8) of it."""
    row = conn.execute(
        select(job_logs.c.text, job_logs.c.dropped_bytes).where(job_logs.c.job_id == job_id)
    ).first()
    old, dropped = (row.text, row.dropped_bytes) if row else ("", 0)
    data = (old + text).encode("utf-8")
    if len(data) > limit_bytes:
        cut = len(data) - limit_bytes
        dropped += cut
        data = data[cut:]
    kept = data.decode("utf-8", errors="ignore")
    if row is None:
        conn.execute(insert(job_logs).values(job_id=job_id, text=kept, dropped_bytes=dropped))
    else:
        conn.execute(
            update(job_logs)
            .where(job_logs.c.job_id == job_id)
            .values(text=kept, dropped_bytes=dropped)
        )
