"""Observers of source assets: a file's modification time or content hash as its data
version, read every ``intervalSeconds``. The reading happens outside any transaction; the
record (``asset_versions.observe``) keeps only a new version."""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

from sqlalchemy import Connection, select, update

from app.store import asset_versions as versions
from app.store.database import Database
from app.store.tables import assets

log = logging.getLogger("jobchain.automation")
CHUNK = 1 << 20


def read_version(observe: dict[str, Any]) -> str:
    """The data version of what ``observe`` names (raises OSError if unreadable)."""
    path = observe["path"]
    if observe["type"] == "FILE_MTIME":
        return str(os.stat(path).st_mtime_ns)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def observe_due(db: Database, at: float) -> int:
    """Observe every source whose observation is due; returns how many were new data."""
    a = assets.c
    with db.read() as conn:
        due = conn.execute(
            select(a.id, a.model_id, a.name, a.observe).where(
                a.kind == "source",
                a.next_evaluation_at.is_(None) | (a.next_evaluation_at <= at),
            )
        ).all()
    due = [row for row in due if row.observe]  # JSON null is not SQL NULL
    new = 0
    for row in due:
        try:
            version: str | None = read_version(row.observe)
        except OSError as exc:
            log.warning("source %s: cannot observe %s: %s", row.name, row.observe["path"], exc)
            version = None
        next_at = at + float(row.observe.get("intervalSeconds", 60))

        def work(
            conn: Connection,
            row: Any = row,
            version: str | None = version,
            next_at: float = next_at,
        ) -> bool:
            found = version is not None and versions.observe(
                conn, row.model_id, row.id, version, at
            )
            conn.execute(
                update(assets).where(assets.c.id == row.id).values(next_evaluation_at=next_at)
            )
            return found

        new += bool(db.write(work))
    return new
