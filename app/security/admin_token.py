"""The admin token of a first start: created once, saved for the CLI, read back by it.

No web stack here: the CLI (``jobchain worker`` included) reads the token without Flask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from app.store import tokens
from app.store.database import Database
from config.settings import CHECKOUT_DIR, DEFAULT_DATA_DIR

ADMIN_TOKEN_FILE = DEFAULT_DATA_DIR / "admin-token"


def ensure_admin_token(db: Database, path: Path = ADMIN_TOKEN_FILE) -> str | None:
    """On a first start (no active token at all, none seeded) create an admin token and
    write it to ``path`` with mode 0600, so `make run` needs no set-up. Returns the new
    secret for the caller to print once; None when tokens already exist."""
    created = tokens.create_first_admin(db, "first-start admin")
    if created is None:
        return None
    _, secret = created
    write_secret(path, secret)
    return secret


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only, never world-readable even
    for a moment (mkstemp creates 0600) and never half-written (atomic rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_admin_token(path: Path = ADMIN_TOKEN_FILE) -> str | None:
    """The token saved by a first start, for CLI calls made without --token; None if absent."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def admin_token_paths(cwd: Path | None = None) -> list[Path]:
    """Where a first start may have saved the admin token, in the order the CLI looks:
    var/ of the current directory (``jobchain serve`` writes it under the directory it runs
    in), then var/ of the checkout jobchain is installed from (where `make run` runs), so
    ``.venv/bin/jobchain`` finds it from any directory."""
    here = (cwd or Path.cwd()) / ADMIN_TOKEN_FILE
    return list(dict.fromkeys([here.absolute(), CHECKOUT_DIR / ADMIN_TOKEN_FILE]))


def find_admin_token(paths: list[Path]) -> tuple[str, Path] | None:
    """The first saved admin token among ``paths``, and where it was."""
    for path in paths:
        secret = read_admin_token(path)
        if secret is not None:
            return secret, path
    return None
