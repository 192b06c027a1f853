"""What every API-calling CLI command shares: turning API failures into clean errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from app.client import ApiClientError, ApiUnavailable

T = TypeVar("T")


def api_call(call: Callable[[], T]) -> T:
    """Run one API call; its failure becomes a one-line error plus the bad fields' paths."""
    try:
        return call()
    except ApiClientError as exc:
        lines = [str(exc)]
        if exc.status == 401:
            lines.append("  pass --token or set JOBCHAIN_TOKEN (see `jobchain tokens create`)")
        for path, messages in exc.details.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else messages
            lines.append(f"  {path}: {text}")
        raise click.ClickException("\n".join(lines)) from None
    except ApiUnavailable as exc:
        raise click.ClickException(str(exc)) from None
