"""HMAC signatures on callbacks: proof that a callback comes from the integration system.

The sender signs ``<timestamp>.<raw body>`` with a shared secret (HMAC-SHA256) and sends
``X-Jobchain-Timestamp: <unix seconds>`` and ``X-Jobchain-Signature: sha256=<hex>``. The
timestamp bounds how long a captured callback can be replayed; two secrets may be active at
once so a secret can be rotated without rejecting callbacks in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Jobchain-Timestamp"
SIGNATURE_HEADER = "X-Jobchain-Signature"
MAX_SKEW_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class SignatureError(Exception):
    """The callback is not provably from the integration system (HTTP 401)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Jobchain-Signature`` value for ``body`` sent at ``timestamp``."""
    message = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secrets: Sequence[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
) -> None:
    """Accept a signature made with any active secret within the time window, else raise.

    Every secret is compared, each in constant time, so the answer's timing tells nothing
    about which secret (or how much of a signature) matched.
    """
    if not timestamp:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be unix seconds (an integer)")
    skew = now - int(timestamp)
    if skew > MAX_SKEW_SECONDS:
        raise SignatureError(f"timestamp is {skew:.0f} s old; at most {MAX_SKEW_SECONDS} s")
    if skew < -MAX_SKEW_SECONDS:
        raise SignatureError(
            f"timestamp is {-skew:.0f} s in the future; at most {MAX_SKEW_SECONDS} s"
        )
    given = _SIGNATURE.fullmatch(signature.strip())
    if given is None:
        raise SignatureError(f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
    expected = [sign(secret, timestamp, body)[len("sha256=") :] for secret in secrets]
    matches = [hmac.compare_digest(e, given.group(1).lower()) for e in expected]
    if not any(matches):
        raise SignatureError("signature does not match")
