"""``jobchain tokens``: create, list and revoke API tokens, directly in the database.

These commands do not go through the API: a token is needed before the API can be called
at all, and a lost admin token must be replaceable by whoever can reach the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from app.cli.shared import database_option
from app.store import schema
from app.store import tokens as store
from app.store.database import Database
from config import Settings


@contextmanager
def open_database(database_url: str | None) -> Iterator[Database]:
    """The service's database, with its schema (so tokens can be made before a first start)."""
    db = Database(Settings.from_env(database_url=database_url).database_url, pool_size=1)
    try:
        schema.upgrade(db)
        yield db
    finally:
        db.dispose()


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens (directly in the database)."""


@tokens.command()
@click.option("--role", required=True, type=click.Choice(store.ROLES), help="What it may do.")
@click.option("--name", required=True, help="Who uses it, e.g. 'ci' or 'erp-integration'.")
@database_option
def create(role: str, name: str, database_url: str | None) -> None:
    """Create a token and print it. Only its hash is stored: it is shown this once.

    The token alone goes to stdout (TOKEN=$(jobchain tokens create ...)); the note to stderr.
    """
    with open_database(database_url) as db:
        try:
            token, secret = store.create(db, role, name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(
        f"created {token.role} token {token.id} ({token.name}); it is not shown again",
        err=True,
    )


@tokens.command("list")
@database_option
def list_tokens(database_url: str | None) -> None:
    """List tokens: id, role, created, revoked, name (never the token itself)."""
    with open_database(database_url) as db:
        found = store.list_tokens(db)
    click.echo(f"{'ID':>6}  {'ROLE':<11}  {'CREATED':<20}  {'REVOKED':<20}  NAME")
    for token in found:
        revoked = _time(token.revoked_at) if token.revoked_at is not None else "-"
        click.echo(
            f"{token.id:>6}  {token.role:<11}  {_time(token.created_at):<20}  "
            f"{revoked:<20}  {token.name}"
        )


@tokens.command()
@click.argument("token_id", type=click.IntRange(1, 2**63 - 1))
@database_option
def revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token by its id (from `jobchain tokens list`); calls with it get 401."""
    with open_database(database_url) as db:
        token = store.revoke(db, token_id)
    if token is None:
        raise click.ClickException(f"no token {token_id}")
    click.echo(f"revoked token {token.id} ({token.role}, {token.name})")


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
