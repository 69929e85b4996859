"""Event pipeline benchmark: API commit -> audit row and -> WebSocket message, with Kafka's own
produce -> consume latency measured in the same run as the floor.

    scripts/testbed up postgres kafka prometheus
    PYTHONPATH=tests .venv/bin/python bench/e2e/pipeline.py [--rate 50] [--seconds 60]

Starts the five services with their sidecars on the running test bed (like scripts/run-local),
drives ``rate`` task changes per second for ``seconds`` through the REST API while a WebSocket of
the same user is open, and at the same time sends ``rate`` messages per second through a Kafka
topic of its own with confluent-kafka. Prints p50/p95/max and each path's ratio to the Kafka floor.

Clocks: "commit" is the moment the API response arrived at the client (the transaction committed
before the response was sent); audit times are the audit row's ``recorded_at`` (PostgreSQL's clock
on the same machine); WebSocket times are the arrival at the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import psycopg
import websockets


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


# -- Kafka floor -----------------------------------------------------------------------------------


def kafka_floor(
    bootstrap: str, rate: float, seconds: float, out: list[float], ready: threading.Event
) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep the handle alive until the topic exists
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([topic])
    # Like Dapr's producer: acks=all, no batching delay.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    total = int(rate * seconds)
    stop_consuming = threading.Event()

    def consume() -> None:
        while not stop_consuming.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            sent = float(msg.value())
            out.append(time.time() - sent)
            if len(out) >= total:
                return

    reader = threading.Thread(target=consume, daemon=True)
    # Wait for partition assignment before producing, so no message waits on a rebalance.
    while not consumer.assignment():
        consumer.poll(0.2)
    reader.start()
    ready.set()
    start = time.monotonic()
    for n in range(total):
        producer.produce(topic, key=str(n % 50), value=repr(time.time()).encode())
        producer.poll(0)
        ahead = (n + 1) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(30)
    deadline_consume = time.monotonic() + 30
    while reader.is_alive() and time.monotonic() < deadline_consume:
        reader.join(0.5)
    stop_consuming.set()
    consumer.close()


# -- where events wait ---------------------------------------------------------------------------------


def sample_queues(dsn: str, user_id: str, samples: list[dict], stop: threading.Event) -> None:
    """Once a second: events still in the backend's outbox, and this user's changes not yet in the
    audit log. A growing outbox means the relay is behind; a growing audit gap with an empty outbox
    means the consumer side is."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        while not stop.wait(1.0):
            unsent = conn.execute("SELECT count(*) FROM backend.outbox WHERE sent_at IS NULL").fetchone()[0]
            written = conn.execute(
                "SELECT (SELECT count(*) FROM backend.outbox o WHERE o.payload->'data'->>'user_id' = %s),"
                " (SELECT count(*) FROM audit.audit_log WHERE user_id = %s)",
                (user_id, user_id),
            ).fetchone()
            samples.append(
                {
                    "t": round(time.monotonic() - start, 1),
                    "outbox_unsent": unsent,
                    "not_yet_audited": written[0] - written[1],
                }
            )


# -- where the CPU goes ---------------------------------------------------------------------------------


def cpu_by_process() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process on the machine, grouped by a short
    name: ``todo-service backend``, ``daprd backend``, ``kafka``, ``postgres``, ... Read from /proc."""
    from testbed.core import process_cpu_seconds

    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        seconds = process_cpu_seconds(int(entry.name))
        if seconds is None:
            continue  # exited meanwhile
        group = _process_group([a.decode(errors="replace") for a in argv if a])
        totals[group] = totals.get(group, 0.0) + seconds
    return totals


def _process_group(argv: list[str]) -> str:
    if not argv:
        return "kernel"
    exe = Path(argv[0]).name
    if exe.startswith("python") and len(argv) > 1:  # a console script runs as `python <script> ...`
        argv = argv[1:]
        exe = Path(argv[0]).name
    if exe == "todo-service" and len(argv) > 1:
        return f"service {argv[1]}"
    if exe == "daprd" and "--app-id" in argv:
        return f"daprd {argv[argv.index('--app-id') + 1]}"
    if exe == "java" and any("kafka" in a for a in argv):
        return "kafka"
    if exe.startswith("postgres") or argv[0].startswith("postgres:"):
        return "postgres"
    if any(a.endswith("pipeline.py") for a in argv):
        return "benchmark driver"
    return exe


# -- the application path --------------------------------------------------------------------------

# Requests in flight at most: when the API falls behind the schedule the driver waits for a free slot
# (and reports the rate it achieved) instead of piling up requests until the HTTP pool times out.
MAX_IN_FLIGHT = 16


async def app_load(urls: dict[str, str], ws_url: str, rate: float, seconds: float, dsn: str) -> dict:
    # aiohttp rather than httpx: the driver shares the 2 cores with the system it measures, and
    # aiohttp costs it less CPU per request.
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(urls["backend"], connector=connector, timeout=timeout) as client:
        email, password = f"bench-{uuid.uuid4().hex[:8]}@example.test", uuid.uuid4().hex
        account = {"email": email, "password": password}
        async with client.post("/api/auth/register", json=account) as r:
            r.raise_for_status()
        async with client.post("/api/auth/login", json=account) as r:
            r.raise_for_status()
            login = await r.json()
        token = login["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        queue_samples: list[dict] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=sample_queues, args=(dsn, login["user_id"], queue_samples, stop_sampling), daemon=True
        )
        sampler.start()
        commits: dict[tuple[str, int], float] = {}
        ws_arrivals: dict[tuple[str, int], float] = {}
        # A generous keepalive: on a saturated 2-core machine a pong can be late without the
        # connection being broken, and a closed socket would end the measurement.
        async with websockets.connect(
            ws_url, subprotocols=["bearer", token], max_queue=None, ping_interval=20, ping_timeout=120
        ) as ws:

            async def read() -> None:
                async for raw in ws:
                    msg = orjson.loads(raw)
                    if msg.get("type", "").startswith("task."):
                        ws_arrivals[(msg["task"]["id"], msg["version"])] = time.time()

            reader = asyncio.create_task(read())
            total = int(rate * seconds)
            task_ids: list[str] = []
            start = time.monotonic()
            in_flight: set[asyncio.Task] = set()
            slots = asyncio.Semaphore(MAX_IN_FLIGHT)

            async def change(n: int) -> None:
                try:
                    await send_change(n)
                finally:
                    slots.release()

            async def send_change(n: int) -> None:
                if n % 3 == 0 or not task_ids:
                    new_task = {"title": f"bench {n}", "remind_before_minutes": None}
                    request = client.post("/api/tasks", json=new_task, headers=auth)
                else:
                    task_id = task_ids[n % len(task_ids)]
                    request = client.patch(
                        f"/api/tasks/{task_id}", json={"description": f"change {n}"}, headers=auth
                    )
                async with request as r:
                    r.raise_for_status()
                    body = await r.json(loads=orjson.loads)
                commits[(body["id"], body["version"])] = time.time()
                if n % 3 == 0:
                    task_ids.append(body["id"])

            for n in range(total):
                await slots.acquire()
                t = asyncio.create_task(change(n))
                in_flight.add(t)
                t.add_done_callback(in_flight.discard)
                ahead = (n + 1) / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*in_flight)
            achieved = total / (time.monotonic() - start)
            print(f"pipeline: {len(commits)} changes at {achieved:.1f}/s; waiting for deliveries", flush=True)
            deadline = time.monotonic() + 60
            while len(ws_arrivals) < len(commits) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            reader.cancel()
    stop_sampling.set()
    sampler.join(5)
    # audit rows of this user's events
    user_id = login["user_id"]
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT task_id::text, task_version, extract(epoch from recorded_at) FROM audit.audit_log "
                "WHERE user_id = %s",
                (user_id,),
            ).fetchall()
        if len(rows) >= len(commits) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    audit_rows = {(r[0], r[1]): float(r[2]) for r in rows}
    to_audit = [audit_rows[k] - t for k, t in commits.items() if k in audit_rows]
    to_ws = [ws_arrivals[k] - t for k, t in commits.items() if k in ws_arrivals]
    return {
        "changes": len(commits),
        "achieved_rate": achieved,
        "to_audit": to_audit,
        "to_ws": to_ws,
        "queues": queue_samples,
        "audit_missing": len(commits) - len(to_audit),
        "ws_missing": len(commits) - len(to_ws),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from testbed.core import Run, acquire
    from testbed.kafka import Kafka
    from testbed.platform import TodoPlatform, _standalone_sidecar_starter
    from testbed.postgres import Postgres

    run = Run.for_session()
    pg, _ = acquire("postgres", Postgres, run)
    kafka, _ = acquire("kafka", Kafka, run)
    platform = TodoPlatform(
        pg=pg,
        kafka=kafka,
        prometheus=None,
        start_sidecar=_standalone_sidecar_starter(run),
        workdir=Path(run.data_dir) / "bench-platform",
        log_dir=Path(run.log_dir),
        database="todo_bench",
    )
    try:
        print("pipeline: starting the platform", flush=True)
        platform.start_all()
        print("pipeline: platform up; measuring", flush=True)
        floor: list[float] = []
        ready = threading.Event()
        floor_thread = threading.Thread(
            target=kafka_floor, args=(kafka.plaintext, args.rate, args.seconds, floor, ready), daemon=True
        )
        floor_thread.start()
        if not ready.wait(120) or not floor_thread.is_alive():
            raise SystemExit("the Kafka floor measurement did not start (see the error above)")
        cpu_before, wall_before = cpu_by_process(), time.monotonic()
        app = asyncio.run(
            app_load(platform.urls, platform.describe()["websocket"], args.rate, args.seconds, platform.dsn)
        )
        floor_thread.join(120)
        cpu_after, wall = cpu_by_process(), time.monotonic() - wall_before
        cpu_used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
    finally:
        platform.stop_all()
    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rate": args.rate,
        "seconds": args.seconds,
        "achieved_rate": round(app["achieved_rate"], 1),
        "kafka_floor": summary(floor),
        "api_to_audit": summary(app["to_audit"]),
        "api_to_websocket": summary(app["to_ws"]),
        "audit_missing": app["audit_missing"],
        "ws_missing": app["ws_missing"],
        "queues": app["queues"],
        "cpu_seconds": {
            k: round(v, 1) for k, v in sorted(cpu_used.items(), key=lambda kv: -kv[1]) if v >= 0.1
        },
        "wall_seconds": round(wall, 1),
    }
    kf = figures["kafka_floor"]
    print(f"{'path':<22}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'p95 / floor p95':>18}")
    for name in ("kafka_floor", "api_to_audit", "api_to_websocket"):
        s = figures[name]
        ratio = s["p95"] / kf["p95"] if kf["p95"] else float("nan")
        print(
            f"{name:<22}{s['n']:>6}{s['p50'] * 1000:>10.1f}{s['p95'] * 1000:>10.1f}{s['max'] * 1000:>10.1f}"
            f"{ratio:>18.1f}"
        )
    if app["queues"]:
        worst_outbox = max(q["outbox_unsent"] for q in app["queues"])
        worst_audit = max(q["not_yet_audited"] for q in app["queues"])
        print(
            f"largest queues (sampled each second): outbox unsent {worst_outbox}, "
            f"changes not yet in the audit log {worst_audit}"
        )
    busy = sum(figures["cpu_seconds"].values())
    print(f"CPU used while measuring: {busy:.0f} s in {wall:.0f} s wall ({busy / wall:.2f} cores); largest:")
    for name, seconds in list(figures["cpu_seconds"].items())[:12]:
        print(f"  {name:<26}{seconds:>7.1f} s  {seconds / busy:>5.0%}")
    print(
        f"achieved {figures['achieved_rate']} changes/s; missing audit rows: {app['audit_missing']}, "
        f"missing WebSocket messages: {app['ws_missing']}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if not app["audit_missing"] and not app["ws_missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
