"""Pure task rules: tag normalisation, priority ranks, sort keys and list cursors."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from todo.common.validation import storable_text

MAX_TAGS = 10
MAX_TAG_LENGTH = 50


class Priority(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


PRIORITY_RANK = {Priority.low: 1, Priority.medium: 2, Priority.high: 3}


class Status(StrEnum):
    pending = "pending"
    completed = "completed"


class Freq(StrEnum):
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"
    yearly = "yearly"


def check_recurrence_fits(due_at: datetime | None, recurrence: dict[str, Any] | None) -> None:
    """Raise ValueError when the occurrence after ``due_at`` would fall after year 9999 (the last
    year a date can hold): the recurring service could never compute it."""
    if due_at is None or not recurrence:
        return
    from todo.recurring.recurrence import InvalidRecurrence, Recurrence, as_utc, series_date

    try:
        rule = Recurrence.from_dict(recurrence)
        if rule is not None:
            series_date(as_utc(due_at), rule, 1)
    except InvalidRecurrence:
        return  # the schema reports what is wrong with the rule itself
    except (OverflowError, ValueError):
        raise ValueError(
            "the occurrence after due_at would fall after year 9999: choose an earlier due_at or a "
            "smaller recurrence interval"
        ) from None


class SortKey(StrEnum):
    priority = "priority"
    due = "due"
    created = "created"
    updated = "updated"


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


class TagsMatch(StrEnum):
    all = "all"
    any = "any"


#: A character a tag may hold: not a comma (the list separator of the ?tags= filter), no whitespace
#: but the plain space, no control or invisible formatting character. (A lone surrogate, which no
#: JSON Schema pattern can name, is refused as text PostgreSQL cannot store.)
_TAG_CHAR = (
    r"[^,\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
    r"\ufff9-\ufffb]"
)
#: One tag as a client sends it: 1-50 characters, spaces inside, surrounding spaces trimmed. The
#: OpenAPI document publishes this pattern; the API applies exactly it.
TAG_WORD = rf"{_TAG_CHAR}(?:(?:{_TAG_CHAR}| ){{0,{MAX_TAG_LENGTH - 2}}}{_TAG_CHAR})?"
TAG_PATTERN = rf"^ *{TAG_WORD} *$"
#: The ?tags= filter also takes comma-separated tags in one value (empty parts are ignored).
TAG_LIST_PATTERN = rf"^ *(?:{TAG_WORD})?(?: *, *(?:{TAG_WORD})?)* *$"
_TAG = re.compile(TAG_PATTERN)


def normalize_tags(tags: list[str], *, limit: int | None = MAX_TAGS) -> list[str]:
    """Trim, lower-case and de-duplicate (first occurrence wins); each tag matches TAG_PATTERN."""
    result: list[str] = []
    for raw in tags:
        # fullmatch: a JSON Schema (ECMA 262) $ is the end of the text, Python's search would also
        # stop before a final newline
        if not _TAG.fullmatch(raw):
            raise ValueError(
                f"a tag is 1-{MAX_TAG_LENGTH} characters without commas, control or invisible characters"
            )
        tag = storable_text(raw).strip().lower()
        if tag not in result:
            result.append(tag)
    if limit is not None and len(result) > limit:
        raise ValueError(f"at most {limit} distinct tags")
    return result


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Position after the last item of a page: the sort value of that item and its id."""

    sort: SortKey
    order: SortOrder
    value: Any  # int (priority rank), datetime, or None (a task without due date)
    task_id: uuid.UUID

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        raw = orjson.dumps({"s": self.sort.value, "o": self.order.value, "v": value, "i": str(self.task_id)})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, sort: SortKey, order: SortOrder) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise InvalidCursor("not a cursor")
            cur_sort, cur_order = SortKey(data["s"]), SortOrder(data["o"])
            task_id = uuid.UUID(data["i"])
            value = data["v"]
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise InvalidCursor("the cursor is not valid; use next_cursor from a previous page") from None
        if (cur_sort, cur_order) != (sort, order):
            raise InvalidCursor("the cursor belongs to a different sort or order")
        try:
            if sort is SortKey.priority:
                if not isinstance(value, int) or isinstance(value, bool) or value not in (1, 2, 3):
                    raise InvalidCursor("the cursor is not valid")
            elif value is not None or sort is not SortKey.due:
                if not isinstance(value, str):
                    raise InvalidCursor("the cursor is not valid")
                value = datetime.fromisoformat(value)
                if value.tzinfo is None:
                    raise InvalidCursor("the cursor is not valid")
        except ValueError:
            raise InvalidCursor("the cursor is not valid") from None
        return cls(sort, order, value, task_id)
