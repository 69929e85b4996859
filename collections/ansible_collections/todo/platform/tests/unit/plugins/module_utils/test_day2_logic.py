# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure decisions behind the day-2 runbooks: what a DLQ message is and what a replay sends
(kafka_dlq), when a rollout is over and which pods do not serve (deployment_rollout, status), and
what a support bundle redacts (support_bundle). The modules themselves run against the test bed's
Kafka and kwok cluster in tests/runbooks."""

from __future__ import annotations

import base64
import json

import pytest
from ansible_collections.todo.platform.plugins.module_utils.kafka_dlq import (
    describe_message,
    replay_payload,
    select_for_replay,
)
from ansible_collections.todo.platform.plugins.module_utils.redact import REDACTED, Redactor
from ansible_collections.todo.platform.plugins.module_utils.rollout import (
    RolloutFailed,
    jobs_failed,
    pods_not_ready,
    rollout_state,
)

EVENT = {
    "specversion": "1.0",
    "id": "e1",
    "source": "/todo/backend",
    "type": "com.todo.task.created",
    "subject": "t1",
    "data": {"id": "t1"},
}


def test_a_poison_event_carries_the_consumers_reason_and_is_replayed_without_it():
    value = json.dumps(EVENT | {"deadletterreason": "data.user_id is not a UUID", "topic": "task-events-dlq"})
    entry = describe_message(value.encode(), b"t1", 0, 5, 1)
    assert (entry["dead_lettered_by"], entry["reason"], entry["replayable"]) == (
        "consumer",
        "data.user_id is not a UUID",
        True,
    )
    assert json.loads(replay_payload(value.encode())) == EVENT


def test_dapr_dead_letters_and_unparseable_bodies():
    assert describe_message(json.dumps(EVENT).encode())["dead_lettered_by"] == "dapr"
    wrapper = EVENT | {"type": "com.todo.deadletter", "data": {"reason": "body is not JSON", "body": "x"}}
    entry = describe_message(json.dumps(wrapper).encode())
    assert entry["reason"] == "body is not JSON" and not entry["replayable"]
    assert not describe_message(b"\xff not json")["replayable"]


def test_an_event_dead_lettered_twice_is_replayed_once_and_unknown_ids_are_named():
    first = describe_message(json.dumps(EVENT).encode(), partition=0, offset=1)
    second = describe_message(json.dumps(EVENT).encode(), partition=0, offset=7)
    chosen, missing, refused = select_for_replay([first, second], {"e1", "e9"}, False)
    assert [c["offset"] for c in chosen] == [7] and missing == ["e9"] and refused == {}


def pod(name, ready, hash_="new", deleting=False, reason=None):
    cond = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    if reason:
        cond["reason"] = reason
    md = {"name": name, "labels": {"pod-template-hash": hash_}}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": md, "status": {"phase": "Running", "conditions": [cond]}}


def test_a_ready_condition_with_more_fields_than_type_and_status_still_counts():
    pods = [pod("a", True), pod("b", False, reason="ContainersNotReady"), pod("c", True, deleting=True)]
    assert pods_not_ready(pods) == [
        {"name": "b", "phase": "Running", "reason": "ContainersNotReady"},
        {"name": "c", "phase": "Running", "reason": "terminating"},
    ]


def test_a_running_backup_pod_is_not_a_pod_that_fails_to_serve():
    # CI met the nightly backup's pod mid-run (Pending, ContainersNotReady) and status failed on it
    backup = pod("todo-db-backup-29942057-4sr92", False, reason="ContainersNotReady")
    backup["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "todo-db-backup-29942057"}]
    backup["status"]["phase"] = "Pending"
    stuck = pod("backend-1", False, reason="ContainersNotReady")
    stuck["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "backend-abc"}]
    assert pods_not_ready([backup, stuck]) == [
        {"name": "backend-1", "phase": "Running", "reason": "ContainersNotReady"}
    ]


def test_only_jobs_that_gave_up_are_failed():
    def job(name, *conditions):
        return {"metadata": {"name": name}, "status": {"conditions": list(conditions)}}

    gave_up = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "3 tries"}
    assert jobs_failed(
        [
            job("todo-db-backup-1", {"type": "Complete", "status": "True"}),
            job("todo-db-backup-2", gave_up),
            job("todo-migrate-x"),
        ]
    ) == [{"name": "todo-db-backup-2", "reason": "BackoffLimitExceeded", "message": "3 tries"}]


DEPLOYMENT = {
    "metadata": {
        "name": "backend",
        "uid": "u1",
        "generation": 3,
        "annotations": {"deployment.kubernetes.io/revision": "2"},
    },
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 3, "replicas": 2, "availableReplicas": 2},
}
RS_NEW = {
    "metadata": {
        "name": "backend-new",
        "ownerReferences": [{"uid": "u1"}],
        "labels": {"pod-template-hash": "new"},
        "annotations": {"deployment.kubernetes.io/revision": "2"},
    }
}


def test_a_rollout_is_over_only_when_no_old_pod_is_left():
    # replicas == available == wanted, but one of them is an old pod (mid-rollout with maxSurge 1)
    done, why = rollout_state(DEPLOYMENT, [RS_NEW], [pod("n1", True), pod("o1", True, hash_="old")])
    assert not done and "o1" in why
    done, why = rollout_state(DEPLOYMENT, [RS_NEW], [pod("n1", True), pod("n2", True, deleting=True)])
    assert not done and "1 of 2 new pods Ready" in why  # a terminating pod does not serve
    assert rollout_state(DEPLOYMENT, [RS_NEW], [pod("n1", True), pod("n2", True)])[0]
    unseen = DEPLOYMENT | {"metadata": DEPLOYMENT["metadata"] | {"generation": 4}}
    assert not rollout_state(unseen, [RS_NEW], [pod("n1", True), pod("n2", True)])[0]
    stuck = DEPLOYMENT | {
        "status": DEPLOYMENT["status"]
        | {
            "conditions": [
                {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
            ]
        }
    }
    with pytest.raises(RolloutFailed):
        rollout_state(stuck, [RS_NEW], [])


def test_redaction_of_known_values_names_and_shapes():
    r = Redactor(["s3cr3t-password", "x"])
    data = r.data(
        {
            "env": [{"name": "JWT_SECRET", "value": "literal-jwt"}, {"name": "LOG_LEVEL", "value": "INFO"}],
            "metadata": [{"name": "saslPassword", "value": "inline"}],
            "note": "postgresql://todo:s3cr3t-password@db/todo "
            + base64.b64encode(b"s3cr3t-password").decode(),
            "log": "Authorization: Bearer abc.def.ghijklmnop token=zzz123",
            "volumes": [{"secret": {"secretName": "todo-app"}}],
        }
    )
    text = json.dumps(data)
    assert "literal-jwt" not in text and "inline" not in text and "s3cr3t" not in text
    assert "abc.def" not in text and "zzz123" not in text and REDACTED in text
    assert '"INFO"' in text and "todo-app" in text  # ordinary values and Secret names stay
    assert r.leaks(text) == []
