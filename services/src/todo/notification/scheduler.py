"""The reminder scheduler loop and the e-mail relay (background tasks of every notification replica)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from todo.common.db import Database
from todo.common.logging import get_logger
from todo.common.metrics import REMINDER_FIRE_DELAY, REMINDERS_FIRED, REMINDERS_PENDING
from todo.common.outbox import OutboxRelay
from todo.notification import store

_log = get_logger("todo.notification.scheduler")


#: How the connection to the SMTP server is protected: ``starttls`` (required upgrade, port 587),
#: ``tls`` (implicit TLS from the first byte, port 465) or ``none`` (plain text).
SMTP_SECURITY_MODES = ("starttls", "tls", "none")


def default_smtp_security(port: int) -> str:
    return "tls" if port == 465 else "starttls"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    sender: str = "todo@localhost"
    username: str | None = None
    password: str | None = None
    #: None: from the port (465 implicit TLS, any other required STARTTLS).
    security: str | None = None
    #: CA bundle that verifies the server's certificate (None: the system's CAs).
    ca_file: str | None = None
    #: Only a developer's machine may send credentials over a plain connection.
    allow_plaintext_credentials: bool = False
    default_to: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.security is None:
            object.__setattr__(self, "security", default_smtp_security(self.port))
        if self.security not in SMTP_SECURITY_MODES:
            raise ValueError(
                f"SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_MODES)}, not {self.security!r}"
            )
        if self.security == "none" and self.has_credentials and not self.allow_plaintext_credentials:
            raise ValueError(
                "SMTP_USERNAME/SMTP_PASSWORD are set with SMTP_SECURITY=none: the credentials would "
                "cross the network in clear. Use SMTP_SECURITY=starttls (port 587) or tls (port 465), "
                "or set DEVELOPMENT_MODE=true on a developer machine."
            )

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)


class ReminderScheduler:
    def __init__(
        self,
        db: Database,
        relay: OutboxRelay,
        *,
        poll_interval: float = 0.5,
        batch_size: int = 100,
        smtp: SmtpSettings | None = None,
    ) -> None:
        self.db = db
        self.relay = relay
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.smtp = smtp

    async def fire_once(self) -> list[store.FiredReminder]:
        email_to = self.smtp.default_to if self.smtp else None
        async with self.db.transaction() as session:
            fired = await store.fire_due(
                session, limit=self.batch_size, email_to=email_to if self.smtp else None
            )
        for item in fired:
            REMINDERS_FIRED.labels(item.timing).inc()
            REMINDER_FIRE_DELAY.observe(max(0.0, (item.fired_at - item.fire_at).total_seconds()))
            _log.info("reminder fired", task_id=str(item.task_id), timing=item.timing)
        if fired:
            self.relay.notify()
        return fired

    async def refresh_gauge(self) -> None:
        async with self.db.session() as session:
            REMINDERS_PENDING.set(await store.pending_count(session))

    async def run(self) -> None:
        """Fire due reminders forever; a database outage only delays them (they then fire late)."""
        ticks = failures = 0
        while True:
            try:
                fired = await self.fire_once()
                if ticks % 10 == 0:
                    await self.refresh_gauge()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    _log.warning(
                        "scheduler cycle failed", error=f"{type(exc).__name__}: {exc}", failures=failures
                    )
                fired = []
            ticks += 1
            if len(fired) < self.batch_size:
                backoff = min(5.0, self.poll_interval * 2 ** min(failures, 4))
                await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))

    async def send_emails_once(self) -> int:
        if self.smtp is None:
            return 0
        sent = 0
        async with self.db.transaction() as session:
            for row in await store.claim_emails(session):
                try:
                    await send_reminder_email(self.smtp, row["recipient"], row["payload"])
                except Exception as exc:
                    _log.warning("reminder e-mail failed; will retry", error=f"{type(exc).__name__}: {exc}")
                    await store.mark_email_failed(session, row["id"], f"{type(exc).__name__}: {exc}")
                    continue
                await store.mark_email_sent(session, row["id"])
                sent += 1
        return sent

    async def run_emails(self) -> None:
        while True:
            try:
                sent = await self.send_emails_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("e-mail relay cycle failed", error=f"{type(exc).__name__}: {exc}")
                sent = 0
            if not sent:
                await asyncio.sleep(1.0)


def reminder_message(smtp: SmtpSettings, recipient: str, event: dict[str, Any]) -> EmailMessage:
    data = event.get("data") or {}
    task = data.get("task") or {}
    title = str(task.get("title") or "a task")
    due = data.get("due_at") or "no due date"
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = recipient
    message["Subject"] = f"Reminder: {title}"
    message["Message-ID"] = f"<{event.get('id')}@todo.reminders>"
    late = " (sent late: reminders were paused at the reminder time)" if data.get("late") else ""
    message.set_content(f'Your task "{title}" is due at {due}.{late}\n')
    return message


async def send_reminder_email(smtp: SmtpSettings, recipient: str, event: dict[str, Any]) -> None:
    await aiosmtplib.send(
        reminder_message(smtp, recipient, event),
        hostname=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=smtp.password,
        # False, not None: None would fall back to plain text when the server offers no STARTTLS.
        start_tls=smtp.security == "starttls",
        use_tls=smtp.security == "tls",
        cert_bundle=smtp.ca_file,
        timeout=smtp.timeout,
    )


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def utcnow() -> datetime:
    return datetime.now(UTC)
