"""The outbox relay's bulk rounds (pure logic: which events go in which bulk publish call).

The sidecar here is a recorder that answers like Dapr's bulk publish API and can be told to fail
chosen entries; the real path (backend -> daprd -> Kafka) is covered by
services/tests/backend/test_events.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from todo.common.dapr import BulkEntry
from todo.common.outbox import OutboxRelay


class RecordingSidecar:
    def __init__(self, failing: set[int] = frozenset()) -> None:
        self.calls: list[list[tuple[str, str | None]]] = []
        self.failing = {str(seq) for seq in failing}

    async def publish_bulk(self, topic: str, entries: list[BulkEntry]) -> dict[str, str]:
        self.calls.append([(e.entry_id, e.partition_key) for e in entries])
        return {e.entry_id: "broker said no" for e in entries if e.entry_id in self.failing}


def _row(seq: int, key: str | None, topic: str = "task-events") -> SimpleNamespace:
    return SimpleNamespace(
        seq=seq, topic=topic, event_type="com.todo.task.updated", partition_key=key, payload={"id": f"e{seq}"}
    )


def _relay(sidecar: RecordingSidecar) -> OutboxRelay:
    relay = OutboxRelay.__new__(OutboxRelay)  # no database needed for the rounds
    relay.dapr = sidecar
    return relay


def _publish(rows, failing=frozenset()):
    sidecar = RecordingSidecar(set(failing))
    published, failures = asyncio.run(_relay(sidecar)._publish_batch(rows))
    return sidecar.calls, published, [row.seq for row, _ in failures]


def test_one_event_per_key_per_call_in_sequence_order():
    keys = ["a", "b", "a", "a", "c", None, None]
    rows = [_row(seq, key) for seq, key in enumerate(keys, start=1)]
    calls, published, failed = _publish(rows)
    assert calls == [
        [("1", "a"), ("2", "b"), ("5", "c"), ("6", None), ("7", None)],
        [("3", "a")],
        [("4", "a")],
    ]
    assert sorted(published) == [1, 2, 3, 4, 5, 6, 7] and failed == []


def test_a_failed_event_stops_its_key_and_only_its_key():
    rows = [_row(1, "a"), _row(2, "b"), _row(3, "a"), _row(4, "b"), _row(5, "a")]
    calls, published, failed = _publish(rows, failing={3})
    assert calls == [[("1", "a"), ("2", "b")], [("3", "a"), ("4", "b")]]
    assert sorted(published) == [1, 2, 4]
    assert failed == [3], "5 waits behind 3: nothing of key a may overtake it"


def test_each_topic_gets_its_own_call():
    rows = [_row(1, "a", "task-events"), _row(2, "b", "reminders")]
    calls, published, _ = _publish(rows)
    assert sorted(calls) == [[("1", "a")], [("2", "b")]]
    assert sorted(published) == [1, 2]
