"""From a completed task snapshot (as the backend publishes it) to the next occurrence request."""

import uuid
from datetime import UTC, datetime

import pytest
from testbed.platform import task_snapshot
from todo.common.consumer import PoisonEvent
from todo.recurring.handlers import plan_next


def snap(**fields):
    return task_snapshot(uuid.uuid4(), status="completed", **fields)


def test_one_off_task_has_no_next_occurrence():
    assert plan_next(snap(recurrence=None, completed_at="2026-03-01T10:00:00Z"), None) is None


def test_daily_task_uses_completion_time_and_series_anchor():
    got = plan_next(
        snap(
            recurrence={"freq": "daily", "interval": 1, "until": None, "count": None},
            due_at="2026-03-01T09:00:00Z",
            series_anchor_at="2026-02-27T09:00:00Z",
            completed_at="2026-03-03T12:00:00Z",
            occurrence=3,
        ),
        None,
    )
    assert got.due_at == datetime(2026, 3, 4, 9, tzinfo=UTC)
    assert got.series_anchor_at == datetime(2026, 2, 27, 9, tzinfo=UTC)


def test_without_completed_at_the_event_time_is_the_completion_time():
    event_time = datetime(2026, 5, 1, 18, 30, tzinfo=UTC)
    got = plan_next(snap(recurrence={"freq": "weekly"}, completed_at=None), event_time)
    assert got.due_at == datetime(2026, 5, 8, 18, 30, tzinfo=UTC)


def test_ended_series_has_no_next_occurrence():
    task = snap(recurrence={"freq": "daily", "count": 2}, occurrence=2, completed_at="2026-03-03T12:00:00Z")
    assert plan_next(task, None) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"recurrence": {"freq": "fortnightly"}},
        {"recurrence": {"freq": "daily"}, "due_at": "yesterday"},
        {"recurrence": {"freq": "daily"}, "occurrence": 0},
        {"recurrence": "daily"},
    ],
)
def test_unusable_snapshots_are_poison(fields):
    with pytest.raises(PoisonEvent):
        plan_next(snap(completed_at="2026-03-03T12:00:00Z") | fields, None)
