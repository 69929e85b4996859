"""With 500 task changes in flight, restart each consumer with its sidecar, and the Kafka broker.

Afterwards: exactly one audit row per published event, every completed recurring task has exactly
one next occurrence, every reminder fired exactly once.
"""

import asyncio
import collections
import re

import pytest
from fault_load import (
    audit_event_ids,
    occurrences_of,
    published_event_ids,
    reminder_firings,
    reminders_unpublished,
    run_changes,
    unpublished_count,
)
from testbed.kafka_waits import uncommitted
from testbed.polling import eventually_async

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

#: Everything in flight must have settled within this bound after the load ends.
SETTLE_SECONDS = 240


#: The consumers whose effects the invariants count, each a consumer group on task-events.
CONSUMER_GROUPS = ("audit", "recurring-task", "notification")


async def settle(platform, result) -> None:
    """Wait until every effect of the load is in place and every consumer group has committed all of
    task-events: from then on no redelivery (a duplicate) can still arrive, so the counts are final."""
    dsn = platform.dsn

    async def settled() -> bool:
        assert unpublished_count(dsn) == 0, f"{unpublished_count(dsn)} backend outbox rows unpublished"
        missing = set(published_event_ids(dsn)) - set(audit_event_ids(dsn))
        assert not missing, f"{len(missing)} published events not audited yet"
        occurrences = occurrences_of(dsn, result.recurring_completed)
        assert all(n >= 1 for n in occurrences.values()), "completed recurring tasks without a next one"
        firings = reminder_firings(dsn, result.reminder_tasks)
        assert all(n >= 1 for n in firings.values()), "reminders not fired yet"
        assert reminders_unpublished(dsn) == 0, "notification outbox rows unpublished"
        behind = {g: uncommitted(platform.kafka.plaintext, g, "task-events") for g in CONSUMER_GROUPS}
        assert not any(behind.values()), f"task-events not committed by every consumer group: {behind}"
        return True

    await eventually_async(settled, "the load's effects", within=SETTLE_SECONDS, interval=1)


def check_invariants(dsn, result) -> None:
    published = published_event_ids(dsn)
    audited = audit_event_ids(dsn)
    duplicates = [e for e, n in collections.Counter(audited).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} events audited more than once"
    missing = set(published) - set(audited)
    assert not missing, f"{len(missing)} of {len(published)} published events never reached the audit log"
    occurrences = occurrences_of(dsn, result.recurring_completed)
    assert result.recurring_completed, "the load completed no recurring task"
    wrong = {t: n for t, n in occurrences.items() if n != 1}
    assert not wrong, f"recurring tasks without exactly one next occurrence: {wrong}"
    firings = reminder_firings(dsn, result.reminder_tasks)
    assert result.reminder_tasks, "the load created no reminder"
    wrong = {t: n for t, n in firings.items() if n != 1}
    assert not wrong, f"reminders not fired exactly once: {wrong}"


async def run_with_fault(platform, fault) -> None:
    load = asyncio.create_task(run_changes(platform.urls["backend"], total=500, rate=50))
    await asyncio.sleep(3)  # a few seconds in: changes are in flight
    await asyncio.to_thread(fault)
    result = await load
    assert result.changes == 500
    try:
        await settle(platform, result)
        check_invariants(platform.dsn, result)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{problem_lines(platform.log_dir)}") from None


#: a warning or error line of our JSON logs ("level":"error") and of daprd's (level=warning)
PROBLEM_LEVEL = re.compile(r'level"?[:=]"?(warn|warning|error|fatal)\b', re.IGNORECASE)


def problem_lines(log_dir, per_file: int = 12) -> str:
    """The last warnings and errors of each service and sidecar log: why events did not settle."""
    parts = []
    for path in sorted(log_dir.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        hits = [line[:400] for line in lines if PROBLEM_LEVEL.search(line)]
        if hits:
            shown = "\n".join(hits[-per_file:])
            parts.append(f"--- {path.name}: last {min(per_file, len(hits))} of {len(hits)}\n{shown}")
    return "\n".join(parts) or f"(no warnings or errors in {log_dir})"


@pytest.mark.parametrize("service", ["audit", "recurring-task", "notification", "sync"])
async def test_restart_consumer_and_its_sidecar_under_load(todo_platform, service):
    await run_with_fault(todo_platform, lambda: todo_platform.restart(service))


async def test_restart_kafka_broker_under_load(todo_platform, kafka):
    await run_with_fault(todo_platform, kafka.restart)
