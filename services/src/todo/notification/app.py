"""The notification service: a durable reminder schedule moved by task events, fired exactly once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from todo.common.app import create_service_app
from todo.common.cloudevents import TOPIC_TASK_EVENTS
from todo.common.consumer import subscribe
from todo.common.outbox import OutboxRelay
from todo.common.settings import ServiceSettings
from todo.notification.handlers import move_reminder
from todo.notification.scheduler import ReminderScheduler, SmtpSettings
from todo.notification.store import ProcessedEvent, ReminderOutbox

SERVICE = "notification"


class NotificationSettings(ServiceSettings):
    #: How often each replica looks for due reminders (seconds).
    reminder_poll_seconds: float = 0.5
    #: E-mail channel: off unless SMTP_HOST is set.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_from: str = "todo@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: starttls | tls | none; unset: tls on port 465, starttls on any other. With credentials, none
    #: is refused at start-up outside DEVELOPMENT_MODE.
    smtp_security: str | None = None
    #: CA bundle for a server certificate no system CA signed.
    smtp_ca_file: str | None = None
    #: Recipient when the task snapshot carries no ``user_email``.
    smtp_to: str | None = None

    def smtp(self) -> SmtpSettings | None:
        if not self.smtp_host:
            return None
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_from,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value() if self.smtp_password else None,
            security=self.smtp_security or None,
            ca_file=self.smtp_ca_file or None,
            allow_plaintext_credentials=self.development_mode,
            default_to=self.smtp_to,
        )

    def check_can_serve(self) -> None:
        super().check_can_serve()
        self.smtp()  # raises ValueError for credentials over a plain connection


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()

    async def start_relay(app: FastAPI) -> Any:
        return app.state.relay.run()

    async def start_scheduler(app: FastAPI) -> Any:
        return app.state.scheduler.run()

    async def start_email(app: FastAPI) -> Any:
        return app.state.scheduler.run_emails() if settings.smtp() else None

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        title="Todo notification service",
        description="Keeps each task's reminder and publishes com.todo.reminder.due when it is due.",
        on_startup=[start_relay, start_scheduler, start_email],
    )
    app.state.relay = OutboxRelay(app.state.db, ReminderOutbox, app.state.dapr)
    app.state.scheduler = ReminderScheduler(
        app.state.db, app.state.relay, poll_interval=settings.reminder_poll_seconds, smtp=settings.smtp()
    )
    subscribe(app, TOPIC_TASK_EVENTS, move_reminder, processed=ProcessedEvent)
    return app
