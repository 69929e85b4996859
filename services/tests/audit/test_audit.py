"""The audit service against a real PostgreSQL: exactly-once recording and the read API."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from testbed.platform import TEST_JWT_SECRET, migrate, task_event, task_snapshot, token_for
from todo.audit.app import create_app
from todo.common.settings import ServiceSettings

pytestmark = pytest.mark.testbed


@pytest.fixture(scope="module")
def audit_dsn(pg):
    dsn = pg.create_database("svc_audit_test")
    migrate("audit", dsn)
    return dsn


@pytest.fixture(scope="module")
async def client(audit_dsn):
    settings = ServiceSettings(
        database_url=audit_dsn,
        jwt_secret=TEST_JWT_SECRET,
        dapr_ready_check=False,
        dapr_http_port=1,
        development_mode=True,  # deliveries without the app token
    )  # no sidecar: a DLQ publish fails
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as c:
        yield c
    await app.state.db.dispose()
    await app.state.dapr.aclose()


async def deliver(client, event) -> httpx.Response:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    return await client.post(
        "/events/task-events", content=body, headers={"Content-Type": "application/cloudevents+json"}
    )


async def trail(client, user, **params):
    r = await client.get("/api/audit", params=params, headers={"Authorization": f"Bearer {token_for(user)}"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_subscription_names_topic_route_and_dead_letter_topic(client):
    r = await client.get("/dapr/subscribe")
    assert r.json() == [
        {
            "pubsubname": "pubsub",
            "topic": "task-events",
            "route": "/events/task-events",
            "deadLetterTopic": "task-events-dlq",
            "bulkSubscribe": {"enabled": True, "maxMessagesCount": 100, "maxAwaitDurationMs": 100},
        }
    ]


async def test_event_is_recorded_once_even_when_redelivered(client):
    user = uuid.uuid4()
    event = task_event("created", task_snapshot(user), changed_fields=["title"])
    for _ in range(3):
        r = await deliver(client, event)
        assert r.status_code == 200 and r.json() == {"status": "SUCCESS"}
    body = await trail(client, user)
    assert len(body["items"]) == 1
    item = body["items"][0]
    assert item["event_id"] == event["id"]
    assert item["type"] == "com.todo.task.created"
    assert item["task_id"] == event["subject"]
    assert item["data"]["changed_fields"] == ["title"]
    assert item["version"] == 1


async def test_full_lifecycle_including_delete_is_kept(client):
    user = uuid.uuid4()
    task = task_snapshot(user)
    kinds = ["created", "updated", "completed", "updated", "deleted"]
    events = [task_event(k, {**task, "version": i + 1}) for i, k in enumerate(kinds)]
    for e in events:
        assert (await deliver(client, e)).status_code == 200
    items = (await trail(client, user, task_id=task["id"]))["items"]
    assert [i["type"].rsplit(".", 1)[1] for i in items] == kinds
    assert [i["version"] for i in items] == [1, 2, 3, 4, 5]


async def test_trail_is_private_to_its_user(client):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    await deliver(client, task_event("created", task_snapshot(alice)))
    assert (await trail(client, bob))["items"] == []
    assert len((await trail(client, alice))["items"]) == 1


async def test_filters_and_pagination(client):
    user = uuid.uuid4()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    tasks = [task_snapshot(user) for _ in range(3)]
    for n in range(12):
        task = tasks[n % 3]
        kind = "created" if n < 3 else "updated"
        await deliver(client, task_event(kind, task, time=base + timedelta(minutes=n)))
    assert len((await trail(client, user, type="task.created"))["items"]) == 3
    assert len((await trail(client, user, type="com.todo.task.updated"))["items"]) == 9
    assert len((await trail(client, user, task_id=tasks[1]["id"]))["items"]) == 4
    window = await trail(
        client,
        user,
        since=(base + timedelta(minutes=2)).isoformat(),
        until=(base + timedelta(minutes=5)).isoformat(),
    )
    assert [i["time"] for i in window["items"]] == [
        (base + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (2, 3, 4)
    ]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = await trail(client, user, **params)
        seen += [i["event_id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 12 and len(set(seen)) == 12
    all_items = (await trail(client, user, limit=50))["items"]
    assert seen == [i["event_id"] for i in all_items]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "not-a-cursor"}, 400),
        ({"type": "task.exploded"}, 400),
        ({"limit": 0}, 422),
        ({"task_id": "nope"}, 422),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400),
    ],
)
async def test_bad_queries_get_a_problem_document(client, params, status):
    r = await client.get(
        "/api/audit", params=params, headers={"Authorization": f"Bearer {token_for(uuid.uuid4())}"}
    )
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_reading_needs_a_valid_token(client):
    assert (await client.get("/api/audit")).status_code == 401
    forged = token_for(uuid.uuid4(), secret="another-secret-of-sufficient-length-0000")
    r = await client.get("/api/audit", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


async def test_poison_event_is_never_acknowledged_when_the_dead_letter_topic_is_unreachable(client):
    event = task_event("created", task_snapshot(uuid.uuid4()) | {"user_id": "not-a-uuid"})
    r = await deliver(client, event)
    # No sidecar here, so moving it to task-events-dlq fails: Dapr must redeliver, not lose it.
    assert r.status_code == 503 and r.json() == {"status": "RETRY"}
    r = await deliver(client, b"this is not json")
    assert r.status_code == 503


def _bulk(*events) -> bytes:
    """A bulk-subscribe delivery as daprd sends it (one partition's events, in order)."""
    return orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "topic": "task-events",
            "pubsubname": "pubsub",
            "type": "com.dapr.event.sent.bulk",
            "entries": [
                {
                    "entryId": str(n),
                    "event": event,
                    "contentType": "application/cloudevents+json",
                    "metadata": {"__key": event["subject"], "__partition": "0"},
                }
                for n, event in enumerate(events)
            ],
        }
    )


async def test_bulk_delivery_records_each_event_once(client):
    user = uuid.uuid4()
    first = task_event("created", task_snapshot(user))
    second = task_event("created", task_snapshot(user))
    assert (await deliver(client, first)).json() == {"status": "SUCCESS"}  # seen before the bulk
    r = await deliver(client, _bulk(first, second, second))
    assert r.status_code == 200
    assert r.json() == {"statuses": [{"entryId": str(n), "status": "SUCCESS"} for n in range(3)]}
    items = (await trail(client, user))["items"]
    assert sorted(i["event_id"] for i in items) == sorted([first["id"], second["id"]])


async def test_bulk_delivery_holds_the_events_after_one_that_must_be_retried(client):
    user = uuid.uuid4()
    fine = task_event("created", task_snapshot(user))
    other_task = task_snapshot(user)
    # unusable (no sidecar, so it cannot go to the DLQ either): it must be retried
    stuck = task_event("created", other_task | {"user_id": "not-a-uuid"})
    after_stuck = task_event("updated", other_task | {"version": 2})
    r = await deliver(client, _bulk(fine, stuck, after_stuck))
    assert [s["status"] for s in r.json()["statuses"]] == ["SUCCESS", "RETRY", "RETRY"]
    items = (await trail(client, user))["items"]
    assert [i["event_id"] for i in items] == [fine["id"]], "nothing of the held task was recorded"
