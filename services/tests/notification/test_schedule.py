"""How task events move the reminder schedule (pure rules, no database)."""

from datetime import UTC, datetime, timedelta

from todo.notification.schedule import (
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_UPDATED,
    ReminderState,
    StoredReminder,
    decide,
    timing,
    wanted_fire_at,
)

DUE = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def task(version=1, due=DUE, before=15, status="open"):
    return {
        "version": version,
        "due_at": due.isoformat() if due else None,
        "remind_before_minutes": before,
        "status": status,
    }


def test_created_with_due_date_and_offset_schedules_reminder():
    change = decide(TASK_CREATED, task(), None)
    assert change.state is ReminderState.PENDING
    assert change.fire_at == DUE - timedelta(minutes=15)


def test_no_reminder_without_due_date_or_offset():
    assert wanted_fire_at(task(due=None)) is None
    assert wanted_fire_at(task(before=None)) is None
    assert decide(TASK_CREATED, task(before=None), None).state is ReminderState.CANCELLED


def test_zero_offset_fires_at_the_due_time():
    assert wanted_fire_at(task(before=0)) == DUE


def test_update_moves_a_pending_reminder():
    stored = StoredReminder(1, DUE - timedelta(minutes=15), ReminderState.PENDING)
    change = decide(TASK_UPDATED, task(version=2, due=DUE + timedelta(hours=1)), stored)
    assert change.fire_at == DUE + timedelta(minutes=45)
    assert change.state is ReminderState.PENDING


def test_update_that_keeps_the_time_does_not_refire_a_fired_reminder():
    stored = StoredReminder(1, DUE - timedelta(minutes=15), ReminderState.FIRED)
    assert decide(TASK_UPDATED, task(version=2), stored).state is ReminderState.FIRED


def test_update_that_moves_a_fired_reminder_arms_it_again():
    stored = StoredReminder(1, DUE - timedelta(minutes=15), ReminderState.FIRED)
    change = decide(TASK_UPDATED, task(version=2, before=5), stored)
    assert change.state is ReminderState.PENDING and change.fire_at == DUE - timedelta(minutes=5)


def test_completed_and_deleted_cancel():
    stored = StoredReminder(1, DUE - timedelta(minutes=15), ReminderState.PENDING)
    completed = task(version=2, status="completed")
    assert decide(TASK_COMPLETED, completed, stored).state is ReminderState.CANCELLED
    assert decide(TASK_DELETED, task(version=2), stored).state is ReminderState.CANCELLED


def test_update_to_completed_status_cancels():
    stored = StoredReminder(1, DUE - timedelta(minutes=15), ReminderState.PENDING)
    assert decide(TASK_UPDATED, task(version=2, status="completed"), stored).state is ReminderState.CANCELLED


def test_reopen_rearms_a_cancelled_reminder():
    stored = StoredReminder(2, DUE - timedelta(minutes=15), ReminderState.CANCELLED)
    assert decide(TASK_UPDATED, task(version=3), stored).state is ReminderState.PENDING


def test_stale_and_repeated_events_change_nothing():
    stored = StoredReminder(3, DUE, ReminderState.CANCELLED)
    assert decide(TASK_UPDATED, task(version=2), stored) is None
    assert decide(TASK_UPDATED, task(version=3), stored) is None


def test_unknown_type_is_ignored():
    assert decide("com.todo.task.archived", task(), None) is None


def test_timing_labels():
    assert timing(DUE, DUE + timedelta(seconds=2)) == "on_time"
    assert timing(DUE, DUE + timedelta(minutes=10)) == "late"
