"""The recurrence calculator: which date comes next in a task's series.

A series is anchored on the due date of its first occurrence (``series_anchor_at``). Its dates are
``anchor + k * interval * freq`` for k = 0, 1, 2, ... — always computed from the anchor, never from
the previous occurrence, so a monthly series on the 31st falls back to the last day of shorter
months without drifting (31 Jan, 28 Feb, 31 Mar ...) and a yearly series on 29 February falls back
to 28 February in common years and returns to the 29th in leap years.

The next occurrence is the first date of the series strictly after BOTH the completed occurrence's
due date and the completion time: an overdue daily task does not spawn an already-overdue
occurrence, and a weekly task completed early still moves to the next week. A task without a due
date anchors its series on the completion time.

``count`` limits how many occurrences (tasks) the series has; ``until`` is the last instant a date
of the series may fall on (inclusive). All arithmetic is in UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FREQUENCIES = ("daily", "weekly", "monthly", "yearly")


class InvalidRecurrence(ValueError):
    """The recurrence rule of a task cannot be evaluated (bad freq, interval or count)."""


@dataclass(frozen=True)
class Recurrence:
    freq: str
    interval: int = 1
    until: datetime | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.freq not in FREQUENCIES:
            raise InvalidRecurrence(f"freq must be one of {', '.join(FREQUENCIES)}, got {self.freq!r}")
        if not isinstance(self.interval, int) or isinstance(self.interval, bool) or self.interval < 1:
            raise InvalidRecurrence(f"interval must be an integer >= 1, got {self.interval!r}")
        if self.count is not None and (
            not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1
        ):
            raise InvalidRecurrence(f"count must be an integer >= 1, got {self.count!r}")
        if self.until is not None:
            object.__setattr__(self, "until", as_utc(self.until))

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Recurrence | None:
        """Build from the task snapshot's ``recurrence`` object; ``None`` for a one-off task."""
        if not raw:
            return None
        if not isinstance(raw, dict):
            raise InvalidRecurrence("recurrence must be an object")
        freq = raw.get("freq")
        if freq in (None, "", "none"):
            return None
        until = raw.get("until")
        return cls(
            freq=str(freq).lower(),
            interval=1 if raw.get("interval") is None else raw["interval"],
            until=parse_time(until) if until else None,
            count=raw.get("count"),
        )


@dataclass(frozen=True)
class NextOccurrence:
    due_at: datetime
    series_anchor_at: datetime
    occurrence: int


def parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRecurrence(f"not an ISO 8601 time: {value!r}") from exc
    return as_utc(parsed)


def as_utc(value: datetime) -> datetime:
    # A naive time is taken as UTC: the backend stores timestamptz and always sends an offset.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole months; a day the target month lacks becomes its last day."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def series_date(anchor: datetime, rule: Recurrence, k: int) -> datetime:
    """The k-th date of the series (k = 0 is the anchor itself)."""
    steps = k * rule.interval
    if rule.freq == "daily":
        return anchor + timedelta(days=steps)
    if rule.freq == "weekly":
        return anchor + timedelta(weeks=steps)
    if rule.freq == "monthly":
        return add_months(anchor, steps)
    return add_months(anchor, 12 * steps)


def _first_index_after(anchor: datetime, rule: Recurrence, threshold: datetime) -> int:
    """Smallest k >= 1 with series_date(anchor, rule, k) > threshold."""
    if threshold < anchor:
        return 1
    if rule.freq in ("daily", "weekly"):
        step = timedelta(days=rule.interval * (1 if rule.freq == "daily" else 7))
        k = (threshold - anchor) // step + 1
    else:
        months_per_step = rule.interval * (1 if rule.freq == "monthly" else 12)
        elapsed = (threshold.year - anchor.year) * 12 + (threshold.month - anchor.month)
        k = max(1, elapsed // months_per_step)
        # The estimate is within one step of the answer; walk to it exactly.
        while k > 1 and series_date(anchor, rule, k - 1) > threshold:
            k -= 1
    k = max(1, k)
    while series_date(anchor, rule, k) <= threshold:
        k += 1
    return k


def next_occurrence(
    rule: Recurrence,
    *,
    due_at: datetime | None,
    series_anchor_at: datetime | None,
    completed_at: datetime,
    occurrence: int = 1,
) -> NextOccurrence | None:
    """The occurrence that follows a completed one, or ``None`` when the series has ended.

    ``occurrence`` is the 1-based number of the completed task within its series.
    """
    completed_at = as_utc(completed_at)
    due_at = as_utc(due_at) if due_at else None
    if series_anchor_at is not None:
        anchor = as_utc(series_anchor_at)
    elif due_at is not None:
        anchor = due_at
    else:
        anchor = completed_at
    if rule.count is not None and occurrence >= rule.count:
        return None
    threshold = max(completed_at, due_at) if due_at else completed_at
    k = _first_index_after(anchor, rule, threshold)
    candidate = series_date(anchor, rule, k)
    if rule.until is not None and candidate > rule.until:
        return None
    return NextOccurrence(due_at=candidate, series_anchor_at=anchor, occurrence=occurrence + 1)
