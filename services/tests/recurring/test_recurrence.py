"""The recurrence calculator against the rules of issue 4, with examples and randomised properties."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from todo.recurring.recurrence import (
    InvalidRecurrence,
    Recurrence,
    add_months,
    next_occurrence,
    series_date,
)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nxt(rule, due, done, anchor=None, occurrence=1):
    return next_occurrence(
        rule,
        due_at=t(due) if due else None,
        series_anchor_at=t(anchor) if anchor else None,
        completed_at=t(done),
        occurrence=occurrence,
    )


def test_daily_completed_on_time_moves_one_day():
    got = nxt(Recurrence("daily"), "2026-03-10T09:00", "2026-03-10T08:00")
    assert got.due_at == t("2026-03-11T09:00")
    assert got.series_anchor_at == t("2026-03-10T09:00")
    assert got.occurrence == 2


def test_overdue_daily_task_does_not_spawn_an_overdue_occurrence():
    got = nxt(Recurrence("daily"), "2026-03-10T09:00", "2026-03-14T12:00")
    assert got.due_at == t("2026-03-15T09:00")


def test_completed_exactly_at_a_series_date_moves_past_it():
    got = nxt(Recurrence("daily"), "2026-03-10T09:00", "2026-03-12T09:00")
    assert got.due_at == t("2026-03-13T09:00")


def test_weekly_task_completed_early_moves_to_next_week():
    got = nxt(Recurrence("weekly"), "2026-03-13T17:00", "2026-03-09T10:00")
    assert got.due_at == t("2026-03-20T17:00")


def test_interval_is_honoured():
    got = nxt(Recurrence("weekly", interval=2), "2026-03-13T17:00", "2026-03-13T10:00")
    assert got.due_at == t("2026-03-27T17:00")
    got = nxt(Recurrence("daily", interval=3), "2026-03-10T09:00", "2026-03-14T09:00")
    assert got.due_at == t("2026-03-16T09:00")


def test_monthly_on_the_31st_falls_back_to_last_day_without_drift():
    rule = Recurrence("monthly")
    anchor = "2026-01-31T08:00"
    feb = nxt(rule, anchor, "2026-01-31T07:00", anchor=anchor)
    assert feb.due_at == t("2026-02-28T08:00")
    mar = nxt(rule, "2026-02-28T08:00", "2026-02-28T07:00", anchor=anchor, occurrence=2)
    assert mar.due_at == t("2026-03-31T08:00")
    apr = nxt(rule, "2026-03-31T08:00", "2026-03-31T07:00", anchor=anchor, occurrence=3)
    assert apr.due_at == t("2026-04-30T08:00")


def test_monthly_in_leap_year_uses_the_29th():
    got = nxt(Recurrence("monthly"), "2028-01-31T08:00", "2028-01-30T00:00")
    assert got.due_at == t("2028-02-29T08:00")


def test_yearly_on_29_february():
    rule = Recurrence("yearly")
    anchor = "2028-02-29T12:00"
    got = nxt(rule, anchor, "2028-02-29T11:00")
    assert got.due_at == t("2029-02-28T12:00")
    back = nxt(rule, "2031-02-28T12:00", "2031-02-28T11:00", anchor=anchor, occurrence=4)
    assert back.due_at == t("2032-02-29T12:00")


def test_task_without_due_date_anchors_on_completion_time():
    got = nxt(Recurrence("daily"), None, "2026-05-01T18:30")
    assert got.due_at == t("2026-05-02T18:30")
    assert got.series_anchor_at == t("2026-05-01T18:30")


def test_later_occurrence_keeps_the_series_anchor():
    # The 2nd occurrence (due 02 May) completed on 05 May 20:00 -> next series date after that.
    got = nxt(
        Recurrence("daily"), "2026-05-02T18:30", "2026-05-05T20:00", anchor="2026-05-01T18:30", occurrence=2
    )
    assert got.due_at == t("2026-05-06T18:30")
    assert got.series_anchor_at == t("2026-05-01T18:30")


def test_until_is_inclusive_and_ends_the_series():
    rule = Recurrence("daily", until=t("2026-03-12T09:00"))
    assert nxt(rule, "2026-03-11T09:00", "2026-03-11T08:00").due_at == t("2026-03-12T09:00")
    assert nxt(rule, "2026-03-12T09:00", "2026-03-12T08:00") is None
    # Completed so late that the next series date is past `until`.
    assert nxt(rule, "2026-03-10T09:00", "2026-03-12T10:00") is None


def test_count_counts_occurrences():
    rule = Recurrence("weekly", count=3)
    assert nxt(rule, "2026-03-13T17:00", "2026-03-13T10:00", occurrence=1).occurrence == 2
    assert nxt(rule, "2026-03-20T17:00", "2026-03-20T10:00", occurrence=2).occurrence == 3
    assert nxt(rule, "2026-03-27T17:00", "2026-03-27T10:00", occurrence=3) is None


def test_from_dict_reads_the_task_snapshot():
    rule = Recurrence.from_dict(
        {"freq": "Monthly", "interval": 2, "until": "2027-01-01T00:00:00Z", "count": None}
    )
    assert rule == Recurrence("monthly", 2, t("2027-01-01T00:00"), None)
    assert Recurrence.from_dict(None) is None
    assert Recurrence.from_dict({"freq": None}) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"freq": "hourly"},
        {"freq": "daily", "interval": 0},
        {"freq": "daily", "count": 0},
        {"freq": "daily", "interval": "2"},
        {"freq": "daily", "until": "tomorrow"},
    ],
)
def test_bad_rules_are_rejected_clearly(raw):
    with pytest.raises(InvalidRecurrence):
        Recurrence.from_dict(raw)


def test_add_months_clamps_to_month_end():
    assert add_months(t("2026-01-31T00:00"), 1) == t("2026-02-28T00:00")
    assert add_months(t("2026-12-15T00:00"), 1) == t("2027-01-15T00:00")
    assert add_months(t("2026-03-31T00:00"), -1) == t("2026-02-28T00:00")


# --- randomised properties against a brute-force oracle -------------------------------------------


def _random_case(rng: random.Random):
    freq = rng.choice(["daily", "weekly", "monthly", "yearly"])
    interval = rng.randint(1, 4)
    anchor = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(
        days=rng.randint(0, 1500), minutes=rng.randint(0, 1439)
    )
    if rng.random() < 0.3:  # exercise month ends and leap days on purpose
        month_end = anchor.replace(month=rng.choice([1, 2, 3, 5, 8, 12]), day=28)
        anchor = month_end + timedelta(days=rng.randint(0, 3))
    rule = Recurrence(freq, interval)
    k = rng.randint(0, 30)
    due = series_date(anchor, rule, k)
    completed = due + timedelta(minutes=rng.randint(-60 * 24 * 60, 60 * 24 * 400))
    return rule, anchor, due, completed, k


def _oracle(rule, anchor, due, completed):
    threshold = max(due, completed)
    k = 1
    while series_date(anchor, rule, k) <= threshold:
        k += 1
    return series_date(anchor, rule, k)


@pytest.mark.parametrize("seed", range(20))
def test_property_next_is_first_series_date_after_due_and_completion(seed):
    rng = random.Random(seed)
    for _ in range(200):
        rule, anchor, due, completed, k = _random_case(rng)
        got = next_occurrence(
            rule, due_at=due, series_anchor_at=anchor, completed_at=completed, occurrence=k + 1
        )
        assert got.due_at > due and got.due_at > completed
        assert got.due_at == _oracle(rule, anchor, due, completed), (rule, anchor, due, completed)
        assert got.series_anchor_at == anchor
        # Same day-of-month as the anchor unless the month is too short.
        if rule.freq in ("monthly", "yearly"):
            assert got.due_at.day == anchor.day or got.due_at.day < anchor.day
            assert (got.due_at.hour, got.due_at.minute) == (anchor.hour, anchor.minute)


@pytest.mark.parametrize("seed", range(5))
def test_property_series_dates_strictly_increase(seed):
    rng = random.Random(1000 + seed)
    for _ in range(100):
        rule, anchor, *_ = _random_case(rng)
        dates = [series_date(anchor, rule, k) for k in range(40)]
        assert all(a < b for a, b in zip(dates, dates[1:], strict=False))


@pytest.mark.parametrize("seed", range(5))
def test_property_until_never_exceeded_and_count_respected(seed):
    rng = random.Random(2000 + seed)
    for _ in range(200):
        rule, anchor, due, completed, k = _random_case(rng)
        until = due + timedelta(days=rng.randint(0, 400))
        count = rng.randint(1, 40)
        limited = Recurrence(rule.freq, rule.interval, until, count)
        got = next_occurrence(
            limited, due_at=due, series_anchor_at=anchor, completed_at=completed, occurrence=k + 1
        )
        unlimited = _oracle(rule, anchor, due, completed)
        if k + 1 >= count or unlimited > until:
            assert got is None
        else:
            assert got.due_at == unlimited and got.due_at <= until
