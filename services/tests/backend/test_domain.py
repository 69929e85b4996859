"""Pure rules of the backend: tag normalisation and list cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from todo.backend.domain import Cursor, InvalidCursor, SortKey, SortOrder, normalize_tags


def test_tags_are_trimmed_lowercased_and_deduplicated_in_order():
    assert normalize_tags([" Work", "HOME ", "work", "Home", "q3"]) == ["work", "home", "q3"]


@pytest.mark.parametrize(
    "tags", [[""], ["  "], ["x" * 51], ["a,b"], ["tab\there"], [f"t{i}" for i in range(11)], ["nul\x00"]]
)
def test_bad_tags_are_refused(tags):
    with pytest.raises(ValueError):
        normalize_tags(tags)


@pytest.mark.parametrize(
    ("sort", "value"),
    [
        (SortKey.priority, 3),
        (SortKey.due, None),
        (SortKey.due, datetime(2030, 1, 1, tzinfo=UTC)),
        (SortKey.created, datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_cursor_round_trip(sort, value):
    c = Cursor(sort, SortOrder.asc, value, uuid.uuid4())
    text = c.encode()
    assert "=" not in text and "/" not in text and "+" not in text
    assert Cursor.decode(text, sort, SortOrder.asc) == c


def test_cursor_of_another_sort_or_garbage_is_refused():
    text = Cursor(SortKey.created, SortOrder.desc, datetime(2030, 1, 1, tzinfo=UTC), uuid.uuid4()).encode()
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, SortKey.created, SortOrder.asc)
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, SortKey.due, SortOrder.desc)
    for junk in ("", "!!!", "e30", "bnVsbA", text[:-3]):
        with pytest.raises(InvalidCursor):
            Cursor.decode(junk, SortKey.created, SortOrder.desc)
    bad_priority = Cursor(SortKey.priority, SortOrder.asc, 7, uuid.uuid4()).encode()
    with pytest.raises(InvalidCursor):
        Cursor.decode(bad_priority, SortKey.priority, SortOrder.asc)
