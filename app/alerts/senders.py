"""Sending one notification: a signed webhook or an e-mail. A failure raises
:class:`DeliveryError` with a one-line reason, which is recorded with the attempt.

Webhooks are signed as callbacks are, in the other direction: HMAC-SHA256 over
``<timestamp>.<raw body>`` with the first JOBCHAIN_CALLBACK_SECRETS secret, in
``X-Jobchain-Timestamp`` and ``X-Jobchain-Signature`` (app/security/signatures.py), so a
receiver checks them with the same code. ``X-Jobchain-Delivery`` is the same on every
attempt of one notification: a receiver that got it already (its answer was lost) can
drop the repeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.security.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from config import Settings

if TYPE_CHECKING:
    from email.message import EmailMessage

DELIVERY_HEADER = "X-Jobchain-Delivery"
EVENT_HEADER = "X-Jobchain-Event"
MAX_REASON = 300


class DeliveryError(Exception):
    """The receiver did not take the notification; try again later."""


class Senders:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = settings.callback_secrets[0] if settings.callback_secrets else None
        self.session: Any = None  # made at the first webhook: no requests in idle workers

    def send(self, delivery: Mapping[str, Any]) -> None:
        if delivery["channel"] == "webhook":
            self.webhook(delivery)
        elif delivery["channel"] == "email":
            self.email(delivery)
        else:
            raise DeliveryError(f"unknown channel {delivery['channel']!r}")

    def webhook(self, delivery: Mapping[str, Any]) -> None:
        import requests  # here, not at import: a worker process loads it only to send one

        if self.session is None:
            self.session = requests.Session()
        body = json.dumps(delivery["payload"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: str(delivery["id"]),
            EVENT_HEADER: str(delivery["event_kind"]),
        }
        if self.secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        try:
            answer = self.session.post(
                delivery["target"],
                data=body,
                headers=headers,
                timeout=self.settings.notify_timeout_seconds,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:MAX_REASON]) from None
        if not 200 <= answer.status_code < 300:
            raise DeliveryError(f"HTTP {answer.status_code}: {answer.text.strip()}"[:MAX_REASON])

    def email(self, delivery: Mapping[str, Any]) -> None:
        import smtplib  # here, not at import: a worker process loads it only to send one

        s = self.settings
        message = compose(delivery, s.smtp_from)
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    smtp.starttls()
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:MAX_REASON]) from None


def compose(delivery: Mapping[str, Any], sender: str) -> EmailMessage:
    """A plain-text e-mail: a one-line subject, the facts, and the JSON a webhook gets."""
    from email.message import EmailMessage

    facts: Mapping[str, Any] = delivery["payload"]
    asset = f"{facts['model']}/{facts['asset']}" if "asset" in facts else ""
    what = facts.get("targetObject") or facts.get("schedule") or asset
    message = EmailMessage()
    message["Subject"] = f"[jobchain] {facts['event']}: {what}".strip()
    message["From"] = sender
    message["To"] = ", ".join(a.strip() for a in str(delivery["target"]).split(",") if a.strip())
    message[DELIVERY_HEADER] = str(delivery["id"])
    lines = [f"{key}: {value}" for key, value in facts.items() if value is not None]
    message.set_content("\n".join([*lines, "", json.dumps(facts, indent=2)]) + "\n")
    return message
