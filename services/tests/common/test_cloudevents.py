"""CloudEvents building and parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from todo.common.cloudevents import InvalidEvent, build_event, dead_letter_topic, parse_event


def test_build_then_parse_round_trip():
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    event = build_event(
        "com.todo.task.created",
        "/todo/backend",
        "task-1",
        {"a": 1},
        time=when,
        extensions={"traceparent": "tp"},
    )
    assert event["specversion"] == "1.0" and event["datacontenttype"] == "application/json"
    assert event["time"] == "2030-01-02T01:04:05Z"
    # Dapr adds its own attributes on delivery
    delivered = {**event, "topic": "task-events", "pubsubname": "pubsub"}
    parsed = parse_event(delivered)
    assert parsed.id == event["id"] and parsed.type == "com.todo.task.created"
    assert parsed.subject == "task-1" and parsed.data == {"a": 1}
    assert parsed.time == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert parsed.topic == "task-events" and parsed.traceparent == "tp"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {"id": "1", "source": "s", "type": "t"},
        {"id": "1", "source": "s", "type": "t", "specversion": "0.3"},
        {"id": 1, "source": "s", "type": "t", "specversion": "1.0"},
        {"id": "1", "source": "s", "type": "t", "specversion": "1.0", "time": "yesterday"},
        {"id": "1", "source": "s", "type": "t", "specversion": "1.0", "time": "2030-01-01T00:00:00"},
        {"id": "1", "source": "s", "type": "t", "specversion": "1.0", "subject": 5},
    ],
)
def test_invalid_events_are_rejected(body):
    with pytest.raises(InvalidEvent):
        parse_event(body)


def test_bad_extension_names_and_naive_times_are_refused():
    with pytest.raises(ValueError):
        build_event("t", "s", "x", {}, extensions={"Bad-Name": "v"})
    with pytest.raises(ValueError):
        build_event("t", "s", "x", {}, time=datetime(2030, 1, 1))
    assert dead_letter_topic("task-events") == "task-events-dlq"
