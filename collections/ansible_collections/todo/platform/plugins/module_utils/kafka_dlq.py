# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What sits in a dead-letter topic, and what a replay sends back (pure logic of kafka_dlq).

Two writers put messages on ``<topic>-dlq`` (services/src/todo/common/consumer.py):
- the consumer itself, for a poison event: the original CloudEvent plus ``deadletterreason``; an
  unparseable body is wrapped in a ``com.todo.deadletter`` event whose data holds ``reason`` and
  ``body`` (nothing to replay: it never was an event);
- the Dapr sidecar, through the subscription's ``deadLetterTopic``, once its retries gave up: the
  original CloudEvent as delivered, without a reason.
"""

from __future__ import annotations

import json

#: The wrapper type the consumers give a body that was not a CloudEvent.
UNPARSEABLE_TYPE = "com.todo.deadletter"
#: Attributes a replay drops: the reason is ours, topic/pubsubname are what Dapr adds when it
#: publishes (the consumer removes them too before dead-lettering).
DROPPED_ON_REPLAY = ("deadletterreason", "topic", "pubsubname")
DAPR_REASON = (
    "dead-lettered by the Dapr sidecar after its retries (no reason recorded; the consumer's logs "
    "for this event_id say why)"
)


def dlq_topic_of(topic, dlq_topic=None):
    return dlq_topic or f"{topic}-dlq"


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def describe_message(value, key=None, partition=None, offset=None, timestamp=None):
    """One DLQ message as plain data: event id, type, subject, why it is there, and whether it can
    be replayed (``replayable``) or why not (``not_replayable_because``)."""
    entry = {
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": _text(key),
        "event_id": None,
        "event_type": None,
        "subject": None,
        "dead_lettered_by": None,
        "reason": None,
        "replayable": False,
        "not_replayable_because": None,
    }
    try:
        body = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        entry.update(
            dead_lettered_by="unknown",
            reason="the message is not a JSON object",
            not_replayable_because="not a CloudEvent",
        )
        return entry
    entry.update(event_id=body.get("id"), event_type=body.get("type"), subject=body.get("subject"))
    data = body.get("data")
    if body.get("type") == UNPARSEABLE_TYPE:
        entry.update(
            dead_lettered_by="consumer",
            reason=data.get("reason") if isinstance(data, dict) else None,
            not_replayable_because="the consumer could not parse the original body as a CloudEvent",
        )
        return entry
    missing = [a for a in ("id", "source", "type", "specversion") if not isinstance(body.get(a), str)]
    if missing:
        entry.update(
            dead_lettered_by="unknown",
            reason="not a CloudEvent (no {})".format(", ".join(missing)),
            not_replayable_because="not a CloudEvent",
        )
        return entry
    if isinstance(body.get("deadletterreason"), str):
        entry.update(dead_lettered_by="consumer", reason=body["deadletterreason"])
    else:
        entry.update(dead_lettered_by="dapr", reason=DAPR_REASON)
    entry["replayable"] = True
    return entry


def replay_payload(value):
    """The CloudEvent to publish again (JSON bytes): the DLQ message without what was added to it."""
    body = json.loads(value)
    for attr in DROPPED_ON_REPLAY:
        body.pop(attr, None)
    return json.dumps(body, separators=(",", ":")).encode()


def select_for_replay(entries, event_ids, replay_all):
    """The entries to replay: one per event id (the newest copy: an event dead-lettered twice is
    replayed once), the ids asked for that are not in the DLQ, and the asked-for entries that
    cannot be replayed (with why)."""
    newest = {}
    refused = {}
    for entry in entries:
        event_id = entry["event_id"]
        if replay_all or event_id in event_ids:
            if entry["replayable"]:
                newest[event_id] = entry  # entries come oldest first per partition
            elif event_id is not None or replay_all:
                refused[event_id or "{}/{}".format(entry["partition"], entry["offset"])] = entry[
                    "not_replayable_because"
                ]
    missing = [] if replay_all else [i for i in event_ids if i not in newest and i not in refused]
    return list(newest.values()), missing, refused
