"""The recurring-task service: on task.completed of a recurring task, has the backend create the next one."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from todo.common.app import create_service_app
from todo.common.cloudevents import TASK_EVENT_TYPES, TOPIC_TASK_EVENTS
from todo.common.consumer import subscribe
from todo.common.settings import ServiceSettings
from todo.recurring.handlers import BACKEND_APP_ID, RecurringTaskHandler
from todo.recurring.store import ProcessedEvent

SERVICE = "recurring-task"


class RecurringSettings(ServiceSettings):
    #: The Dapr app id the next occurrences are asked of (the backend's; docs/contracts.md).
    backend_app_id: str = Field(default=BACKEND_APP_ID, min_length=1)


def create_app(settings: RecurringSettings | None = None) -> FastAPI:
    settings = settings or RecurringSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        title="Todo recurring-task service",
        description="Creates the next occurrence of a completed recurring task through the backend.",
    )
    subscribe(
        app,
        TOPIC_TASK_EVENTS,
        RecurringTaskHandler(app.state.dapr, backend_app_id=settings.backend_app_id),
        processed=ProcessedEvent,
        event_types=frozenset({TASK_EVENT_TYPES["completed"]}),
    )
    return app
