"""Where the CLI finds the service and its token when it is not told: the address
``jobchain serve`` listens on by the same ``JOBCHAIN_HOST`` / ``JOBCHAIN_PORT`` settings, and
the admin token a first start saved. Each comes with a note for the error a failed call
prints, saying where the URL came from or where the token was looked for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.security.admin_token import admin_token_paths, find_admin_token
from config import Settings

# A server listening on every address is reached on the loopback one.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
TOKEN_ADVICE = "pass --token or set JOBCHAIN_TOKEN (see `jobchain tokens create`)"


@dataclass(frozen=True)
class Found:
    value: str | None
    note: str  # printed under an error the value may explain ("" when it was given)


def service_url(url: str | None, env: Mapping[str, str]) -> Found:
    """``url`` when given (--url or JOBCHAIN_URL), else where ``jobchain serve`` listens
    with the same environment: JOBCHAIN_HOST and JOBCHAIN_PORT, or their defaults."""
    if url:
        return Found(url, "")
    defaults = Settings()
    host = env.get("JOBCHAIN_HOST", defaults.host).strip()
    host = _ANY_ADDRESS.get(host, host)
    port = env.get("JOBCHAIN_PORT", "").strip() or str(defaults.port)
    shown = f"[{host}]" if ":" in host else host
    origin = "JOBCHAIN_PORT" if env.get("JOBCHAIN_PORT", "").strip() else "the default port"
    note = f"no --url or JOBCHAIN_URL given: this is {origin}, as `jobchain serve` uses"
    return Found(f"http://{shown}:{port}", note)


def admin_token(token: str | None, cwd: Path | None = None) -> Found:
    """``token`` when given (--token or JOBCHAIN_TOKEN), else the admin token a first start
    saved; the note says which file it came from, or every file looked at."""
    if token:
        return Found(token, TOKEN_ADVICE)
    paths = admin_token_paths(cwd)
    found = find_admin_token(paths)
    if found is None:
        looked = ", ".join(map(str, paths))
        return Found(None, f"no token given, and no saved admin token in {looked}; {TOKEN_ADVICE}")
    secret, path = found
    return Found(secret, f"the admin token saved in {path} was refused; {TOKEN_ADVICE}")
