"""recurring-task asks for the next occurrence of the app id BACKEND_APP_ID names, through real daprd.

Self-hosted daprd finds app ids by mDNS across the host, so where two platforms share a host (the
test bed's sessions) each backend needs an app id of its own and recurring-task must call that one:
in CI a fault test's recurring-task once reached another session's "backend", which answered 404.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from testbed.daprd import SubscriberApp
from testbed.polling import eventually_async
from todo.common.dapr import DaprClient
from todo.recurring.app import RecurringSettings
from todo.recurring.handlers import BACKEND_APP_ID, BackendUnavailable, RecurringTaskHandler
from todo.recurring.recurrence import NextOccurrence

pytestmark = pytest.mark.testbed


def test_the_setting_reads_backend_app_id(monkeypatch):
    assert RecurringSettings(development_mode=True).backend_app_id == BACKEND_APP_ID == "backend"
    monkeypatch.setenv("BACKEND_APP_ID", "backend-a1b2")
    assert RecurringSettings(development_mode=True).backend_app_id == "backend-a1b2"


async def test_the_call_reaches_the_configured_backend_not_one_named_backend(daprd_factory, tmp_path):
    own_id = f"backend-{uuid.uuid4().hex[:8]}"
    own, other = SubscriberApp([]), SubscriberApp([])  # both record every POST
    try:
        for app_id, app in ((own_id, own), (BACKEND_APP_ID, other)):
            (tmp_path / app_id).mkdir()
            daprd_factory(app_id, app.port, tmp_path / app_id).wait_app_ready()
        (tmp_path / "caller").mkdir()
        caller = daprd_factory(f"recurring-{uuid.uuid4().hex[:8]}", None, tmp_path / "caller")
        dapr = DaprClient(f"http://127.0.0.1:{caller.http_port}")
        handler = RecurringTaskHandler(dapr, backend_app_id=own_id)
        due = datetime(2030, 1, 2, 9, tzinfo=UTC)
        planned = NextOccurrence(due_at=due, series_anchor_at=due - timedelta(days=1), occurrence=2)
        task_id = str(uuid.uuid4())

        async def asked() -> bool:
            await handler.request_next(task_id, planned)  # BackendUnavailable until mDNS finds it
            return True

        try:
            await eventually_async(asked, f"{own_id} answered", within=60, ignoring=(BackendUnavailable,))
        finally:
            await dapr.aclose()
        path, _, body = await asyncio.to_thread(own.wait_event, 10)
        assert path == f"/internal/tasks/{task_id}/next-occurrence"
        assert body["due_at"].startswith("2030-01-02T09:00:00")
        assert other.events.empty(), "the app named plain 'backend' must not be asked"
    finally:
        own.close()
        other.close()
