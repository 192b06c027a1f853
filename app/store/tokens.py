"""API tokens: created, listed, revoked, verified and seeded here; only hashes are stored.

A token is a random secret of 256 bits, so a plain SHA-256 of it is safe to store (there is
nothing to brute-force, no salt is needed) and doubles as a unique, indexed lookup key:
verifying a token is one primary-key-like query. The secret itself is shown once, when it
is created, and never stored or logged.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, select, update
from sqlalchemy.exc import IntegrityError

from app.store.database import Database, now
from app.store.tables import api_tokens

# Lowest first: each role may do everything the roles before it may.
ROLES: tuple[str, ...] = ("reader", "submitter", "integration", "admin")
# Makes a jobchain token recognizable (in a config file, or to a secret scanner).
TOKEN_PREFIX = "jc_"
MAX_NAME = 255


class TokenConfigError(ValueError):
    """JOBCHAIN_API_TOKENS is malformed. The message never contains a token."""


@dataclass(frozen=True)
class ApiToken:
    """A stored token without its secret (which is not stored at all)."""

    id: int
    name: str
    role: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


_COLUMNS = [c for c in api_tokens.c if c.name != "token_hash"]


def _token(row: RowMapping) -> ApiToken:
    return ApiToken(row["id"], row["name"], row["role"], row["created_at"], row["revoked_at"])


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate_token() -> str:
    """A new secret: the prefix and 32 random bytes, URL-safe (fits any header or env var)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"a token name must be 1 to {MAX_NAME} printable characters")
    return name


def create(db: Database, role: str, name: str) -> tuple[ApiToken, str]:
    """Store a new token; returns it and its secret, which the caller shows once."""
    role, name = check_role(role), check_name(name)
    secret = generate_token()
    digest = hash_token(secret)

    def work(conn: Connection) -> ApiToken:
        return _insert(conn, name, role, digest)

    return db.write(work), secret


def create_first_admin(db: Database, name: str) -> tuple[ApiToken, str] | None:
    """An admin token, but only if no active token exists (the first start of a service)."""
    secret = generate_token()
    digest = hash_token(secret)

    def work(conn: Connection) -> ApiToken | None:
        if conn.execute(_active_query().limit(1)).first() is not None:
            return None
        return _insert(conn, check_name(name), "admin", digest)

    token = db.write(work)
    return (token, secret) if token is not None else None


def list_tokens(db: Database) -> list[ApiToken]:
    """Every token, revoked ones included, oldest first."""
    with db.read() as conn:
        rows = conn.execute(select(*_COLUMNS).order_by(api_tokens.c.id)).mappings()
        return [_token(row) for row in rows]


def revoke(db: Database, token_id: int) -> ApiToken | None:
    """Revoke a token (a no-op if it already is); None if there is no such token."""

    def work(conn: Connection) -> ApiToken | None:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now())
        )
        row = conn.execute(select(*_COLUMNS).where(api_tokens.c.id == token_id)).mappings()
        found = row.first()
        return _token(found) if found is not None else None

    return db.write(work)


def verify(db: Database, token: str) -> ApiToken | None:
    """The active token with this secret, else None (unknown or revoked)."""
    return verify_hash(db, hash_token(token))


def verify_hash(db: Database, digest: str) -> ApiToken | None:
    with db.read() as conn:
        row = conn.execute(_active_query().where(api_tokens.c.token_hash == digest)).mappings()
        found = row.first()
    return _token(found) if found is not None else None


def parse_seeds(specs: Iterable[str]) -> list[tuple[str, str]]:
    """``"role:token"`` entries as (role, token) pairs; a clear error for a bad entry.

    An entry that does not start with a known role is reported by its position only: it
    may well be a token written the wrong way round, and errors end up in logs.
    """
    pairs: dict[str, str] = {}
    for number, spec in enumerate(specs, start=1):
        role, colon, token = spec.partition(":")
        role, token = role.strip(), token.strip()
        where = f"JOBCHAIN_API_TOKENS entry {number}"
        if not colon or role not in ROLES:
            raise TokenConfigError(
                f"{where} does not start with a role: write 'role:token' with a role of "
                f"{', '.join(ROLES)}"
            )
        if not token:
            raise TokenConfigError(f"{where} ({role}) has an empty token")
        if pairs.get(token, role) != role:
            raise TokenConfigError(f"{where} repeats an earlier token with another role")
        pairs[token] = role
    return [(role, token) for token, role in pairs.items()]


def seed(db: Database, specs: Iterable[str]) -> list[ApiToken]:
    """Make the ``"role:token"`` entries of the environment valid tokens, named "env:<role>".

    Idempotent (an upsert by hash), so every process sharing a database may seed the same
    entries at every start. An entry's role may change with the environment; a seeded token
    that was revoked stays revoked (it is returned, so the caller can warn about it).
    """
    pairs = parse_seeds(specs)
    if not pairs:
        return []

    def work(conn: Connection) -> list[ApiToken]:
        return [_upsert(conn, f"env:{role}", role, hash_token(token)) for role, token in pairs]

    try:
        return db.write(work)
    except IntegrityError:
        # Another process inserted the same hash between our SELECT and INSERT; now it exists.
        return db.write(work)


def _active_query() -> Select[Any]:
    return select(*_COLUMNS).where(api_tokens.c.revoked_at.is_(None))


def _insert(conn: Connection, name: str, role: str, digest: str) -> ApiToken:
    created = now()
    result = conn.execute(
        api_tokens.insert().values(name=name, role=role, token_hash=digest, created_at=created)
    )
    assert result.inserted_primary_key is not None
    return ApiToken(int(result.inserted_primary_key[0]), name, role, created, None)


def _upsert(conn: Connection, name: str, role: str, digest: str) -> ApiToken:
    query = select(*_COLUMNS).where(api_tokens.c.token_hash == digest)
    row = conn.execute(query).mappings().first()
    if row is None:
        return _insert(conn, name, role, digest)
    if row["revoked_at"] is None and (row["role"], row["name"]) != (role, name):
        conn.execute(
            update(api_tokens).where(api_tokens.c.id == row["id"]).values(role=role, name=name)
        )
        row = conn.execute(query).mappings().one()
    return _token(row)
