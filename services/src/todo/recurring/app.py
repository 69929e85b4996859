"""The recurring-task service: on task.completed of a recurring task, has the backend create the next one."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from todo.common.app import create_service_app
from todo.common.auth import require_app_token
from todo.common.cloudevents import TASK_EVENT_TYPES, TOPIC_TASK_EVENTS
from todo.common.consumer import EventConsumer, Subscription, add_subscriptions
from todo.common.settings import ServiceSettings
from todo.recurring.handlers import RecurringTaskHandler
from todo.recurring.store import ProcessedEvent

SERVICE = "recurring-task"
SOURCE = "/todo/recurring-task"
EVENTS_ROUTE = "/events/task-events"


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        title="Todo recurring-task service",
        description="Creates the next occurrence of a completed recurring task through the backend.",
    )
    consumer = EventConsumer(
        app.state.db,
        ProcessedEvent,
        app.state.dapr,
        TOPIC_TASK_EVENTS,
        SOURCE,
        event_types=frozenset({TASK_EVENT_TYPES["completed"]}),
    )
    handler = RecurringTaskHandler(app.state.dapr)
    guard = [Depends(require_app_token)] if settings.app_api_token else []
    app.add_api_route(
        EVENTS_ROUTE,
        consumer.endpoint(handler),
        methods=["POST"],
        include_in_schema=False,
        dependencies=guard,
    )
    add_subscriptions(app, [Subscription(TOPIC_TASK_EVENTS, EVENTS_ROUTE)])
    return app
