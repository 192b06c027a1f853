"""What the command groups share: clean errors for API calls, and the --database-url option
of the commands that work on the database directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from app.cli.client import ApiClientError, ApiUnavailable
from app.cli.locate import TOKEN_ADVICE

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class UpperCaseChoice(click.Choice[str]):
    """A choice of upper-case names (statuses, as the API names them), accepted in any case
    and listed in upper case in help and errors: click lists a case-insensitive choice in
    lower case."""

    def __init__(self, choices: list[str]) -> None:
        super().__init__([choice.upper() for choice in choices], case_sensitive=False)

    def normalize_choice(self, choice: object, ctx: click.Context | None) -> str:
        return super().normalize_choice(choice, ctx).upper()


def database_option(command: F) -> F:
    """The --database-url option (env JOBCHAIN_DATABASE_URL) of a direct-database command."""
    option = click.option(
        "--database-url",
        envvar="JOBCHAIN_DATABASE_URL",
        default=None,
        help="SQLAlchemy URL of the service's database (env JOBCHAIN_DATABASE_URL); "
        "default sqlite:///var/jobchain.db.",
    )
    return option(command)


def api_call(call: Callable[[], T]) -> T:
    """Run one API call; its failure becomes a one-line error plus the bad fields' paths."""
    try:
        return call()
    except ApiClientError as exc:
        lines = [str(exc)]
        if exc.status == 401:
            lines.append(f"  {exc.hint or TOKEN_ADVICE}")
        for path, messages in exc.details.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else messages
            lines.append(f"  {path}: {text}")
        raise click.ClickException("\n".join(lines)) from None
    except ApiUnavailable as exc:
        hint = f"\n  {exc.hint}" if exc.hint else ""
        raise click.ClickException(f"{exc}{hint}") from None
