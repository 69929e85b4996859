"""The notification service against a real PostgreSQL (and a real SMTP server from aiosmtpd)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from testbed.core import free_port
from testbed.platform import TEST_JWT_SECRET, migrate, task_event, task_snapshot
from todo.common.db import Database
from todo.common.outbox import OutboxRelay
from todo.notification.app import NotificationSettings, create_app
from todo.notification.scheduler import ReminderScheduler, SmtpSettings
from todo.notification.store import ReminderOutbox, email_outbox, reminders

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def dsn(pg):
    dsn = pg.create_database("svc_notification_test")
    migrate("notification", dsn)
    return dsn


@pytest.fixture(scope="module")
async def app(dsn):
    settings = NotificationSettings(
        database_url=dsn,
        jwt_secret=TEST_JWT_SECRET,
        dapr_ready_check=False,
        dapr_http_port=1,
        development_mode=True,
    )
    app = create_app(settings)
    yield app
    await app.state.db.dispose()
    await app.state.dapr.aclose()


@pytest.fixture(scope="module")
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as c:
        yield c


@pytest.fixture
async def clean(app):
    async with app.state.db.transaction() as s:
        for table in ("reminders", "outbox", "email_outbox", "processed_events"):
            await s.execute(sa.text(f"TRUNCATE notification.{table}"))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def deliver(client, event):
    r = await client.post("/events/task-events", content=orjson.dumps(event))
    assert r.status_code == 200, r.text
    return r.json()["status"]


def reminder_task(user, *, due_in: timedelta, before: int = 1, **extra):
    return task_snapshot(user, due_at=iso(datetime.now(UTC) + due_in), remind_before_minutes=before, **extra)


async def reminder_row(app, task_id):
    async with app.state.db.session() as s:
        row = (await s.execute(sa.select(reminders).where(reminders.c.task_id == uuid.UUID(task_id)))).first()
        return row._mapping if row else None


async def outbox_events(app):
    async with app.state.db.session() as s:
        rows = (await s.execute(sa.select(ReminderOutbox.payload).order_by(ReminderOutbox.seq))).scalars()
        return list(rows)


async def test_due_reminder_fires_once_and_is_queued_for_publishing(app, client, clean):
    user = uuid.uuid4()
    task = reminder_task(user, due_in=timedelta(seconds=30), before=1)  # reminder time: 30 s ago
    assert await deliver(client, task_event("created", task)) == "SUCCESS"
    scheduler: ReminderScheduler = app.state.scheduler
    fired = await scheduler.fire_once()
    assert [str(f.task_id) for f in fired] == [task["id"]]
    assert fired[0].timing == "on_time"
    assert await scheduler.fire_once() == []
    [event] = await outbox_events(app)
    assert event["type"] == "com.todo.reminder.due" and event["subject"] == task["id"]
    assert event["data"]["user_id"] == str(user) and event["data"]["late"] is False
    assert event["data"]["task"]["title"] == task["title"]
    assert (await reminder_row(app, task["id"]))["state"] == "fired"


async def test_future_reminder_does_not_fire_yet(app, client, clean):
    task = reminder_task(uuid.uuid4(), due_in=timedelta(hours=2), before=15)
    await deliver(client, task_event("created", task))
    assert await app.state.scheduler.fire_once() == []
    row = await reminder_row(app, task["id"])
    assert row["state"] == "pending"
    assert row["fire_at"] == datetime.fromisoformat(task["due_at"]) - timedelta(minutes=15)


async def test_update_moves_and_completion_cancels(app, client, clean):
    user = uuid.uuid4()
    task = reminder_task(user, due_in=timedelta(hours=2))
    await deliver(client, task_event("created", task))
    moved = {**task, "version": 2, "due_at": iso(datetime.now(UTC) + timedelta(seconds=10))}
    await deliver(client, task_event("updated", moved, changed_fields=["due_at"]))
    assert (await reminder_row(app, task["id"]))["state"] == "pending"
    done = {**moved, "version": 3, "status": "completed", "completed_at": iso(datetime.now(UTC))}
    await deliver(client, task_event("completed", done))
    assert (await reminder_row(app, task["id"]))["state"] == "cancelled"
    assert await app.state.scheduler.fire_once() == []
    # An old event redelivered late does not resurrect the reminder.
    await deliver(client, task_event("updated", moved))
    assert (await reminder_row(app, task["id"]))["state"] == "cancelled"


async def test_deleted_task_reminder_is_cancelled(app, client, clean):
    task = reminder_task(uuid.uuid4(), due_in=timedelta(seconds=30))
    await deliver(client, task_event("created", task))
    await deliver(client, task_event("deleted", {**task, "version": 2}))
    assert await app.state.scheduler.fire_once() == []


async def test_redelivered_event_is_a_duplicate(app, client, clean):
    task = reminder_task(uuid.uuid4(), due_in=timedelta(seconds=30))
    event = task_event("created", task)
    await deliver(client, event)
    await app.state.scheduler.fire_once()
    await deliver(client, event)  # would re-arm the reminder if it were applied again
    assert await app.state.scheduler.fire_once() == []


async def test_reminder_missed_during_downtime_fires_once_marked_late(app, client, clean):
    task = reminder_task(uuid.uuid4(), due_in=timedelta(minutes=5), before=15)  # due 10 min ago
    await deliver(client, task_event("created", task))
    [fired] = await app.state.scheduler.fire_once()
    assert fired.timing == "late"
    [event] = await outbox_events(app)
    assert event["data"]["late"] is True
    assert (await reminder_row(app, task["id"]))["late"] is True


async def test_replicas_fire_each_reminder_exactly_once(app, client, clean, dsn):
    users = [uuid.uuid4() for _ in range(5)]
    tasks = [reminder_task(users[n % 5], due_in=timedelta(seconds=30)) for n in range(300)]
    for task in tasks:
        await deliver(client, task_event("created", task))
    # Four "replicas": separate connection pools racing over the same due rows.
    dbs = [Database(dsn, pool_size=2) for _ in range(4)]
    schedulers = [
        ReminderScheduler(db, OutboxRelay(db, ReminderOutbox, app.state.dapr), batch_size=7) for db in dbs
    ]

    async def drain(s):
        got = []
        while batch := await s.fire_once():
            got += batch
        return got

    results = await asyncio.gather(*(drain(s) for s in schedulers))
    for db in dbs:
        await db.dispose()
    fired_ids = [str(f.task_id) for r in results for f in r]
    assert sorted(fired_ids) == sorted(t["id"] for t in tasks)
    assert sum(1 for r in results if r) >= 2, "the replicas did not actually run concurrently"
    subjects = [e["subject"] for e in await outbox_events(app)]
    assert sorted(subjects) == sorted(t["id"] for t in tasks)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


async def test_reminder_is_emailed_through_a_real_smtp_server(app, client, clean):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpSettings(
            host="127.0.0.1",
            port=port,
            sender="todo@test.invalid",
            security="none",
            default_to="someone@test.invalid",
        )
        scheduler = ReminderScheduler(app.state.db, app.state.relay, smtp=smtp)
        task = reminder_task(uuid.uuid4(), due_in=timedelta(seconds=20), title="Pay the rent")
        await deliver(client, task_event("created", task))
        assert len(await scheduler.fire_once()) == 1
        assert await scheduler.send_emails_once() == 1
        assert await scheduler.send_emails_once() == 0  # sent once, not again
    finally:
        controller.stop()
    [(rcpt, content)] = inbox.messages
    assert rcpt == ["someone@test.invalid"]
    assert "Subject: Reminder: Pay the rent" in content
    async with app.state.db.session() as s:
        assert (await s.execute(sa.select(email_outbox.c.delivered_at))).scalar_one() is not None


async def test_email_failure_is_kept_for_retry(app, client, clean):
    smtp = SmtpSettings(host="127.0.0.1", port=free_port(), default_to="someone@test.invalid", timeout=2)
    scheduler = ReminderScheduler(app.state.db, app.state.relay, smtp=smtp)
    await deliver(client, task_event("created", reminder_task(uuid.uuid4(), due_in=timedelta(seconds=20))))
    await scheduler.fire_once()
    assert await scheduler.send_emails_once() == 0  # nobody listens on that port
    async with app.state.db.session() as s:
        row = (await s.execute(sa.select(email_outbox))).mappings().one()
    assert row["delivered_at"] is None and row["attempts"] == 1 and row["last_error"]


async def test_poison_task_event_is_not_acknowledged_without_a_dead_letter_topic(client, clean):
    bad = task_event("created", task_snapshot(uuid.uuid4()) | {"due_at": "soon", "remind_before_minutes": 5})
    r = await client.post("/events/task-events", content=orjson.dumps(bad))
    assert r.status_code == 503
