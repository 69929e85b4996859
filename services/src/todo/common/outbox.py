"""Transactional outbox: events are written with the change, in the same transaction, and a relay
publishes them through Dapr afterwards.

Guarantees: an event is published at least once (consumers drop repeats by event id); events with
the same partition key are published in the order they were written (the relay sends batches
through Dapr's bulk publish API, at most one event per key per call, and stops a key at its first
failure); a single relay runs at a time across replicas (PostgreSQL advisory lock). While Kafka or the sidecar
is down, writes still succeed and the relay retries with exponential backoff.

A key whose oldest event keeps failing (say an event the broker refuses as too large) is held back
on its own: its backoff grows with the row's ``attempts`` (kept in the table, so a new relay leader
continues it), and while it is held the relay's query skips the key, so the batch is filled with keys
that can progress. The whole relay backs off only when a cycle published nothing and more than one
key failed (the sidecar or the broker is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
import zlib
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    all_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from todo.common.dapr import BulkEntry, DaprClient, DaprError
from todo.common.db import Database
from todo.common.logging import get_logger
from todo.common.metrics import EVENTS_PUBLISH_FAILED, EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE

_log = get_logger("todo.outbox")


class OutboxMixin:
    """Columns of an outbox table. ``class Outbox(OutboxMixin, Base): __tablename__ = "outbox"``."""

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    topic: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    partition_key: Mapped[str | None] = mapped_column(String(200))
    #: The complete structured CloudEvent, published as is.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:  # noqa: N805 - SQLAlchemy passes the class
        table: str = cls.__tablename__  # type: ignore[attr-defined]  # set by each mapped subclass
        return (Index(f"ix_{table}_unsent", "seq", postgresql_where=text("sent_at IS NULL")),)


def add_event(
    session: AsyncSession,
    model: type[OutboxMixin],
    topic: str,
    event: dict[str, Any],
    partition_key: str | None,
) -> OutboxMixin:
    """Queue ``event`` (a built CloudEvent) for publishing; commits with the caller's transaction."""
    row = model(  # type: ignore[call-arg]  # the mapped subclass takes its columns
        event_id=uuid.UUID(event["id"]),
        topic=topic,
        event_type=event["type"],
        partition_key=partition_key,
        payload=event,
    )
    session.add(row)
    return row


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        model: type[OutboxMixin],
        dapr: DaprClient,
        *,
        batch_size: int = 200,
        idle_interval: float = 1.0,
        linger: float = 0.02,
        min_backoff: float = 0.2,
        max_backoff: float = 5.0,
        retention_seconds: int = 86400,
    ) -> None:
        self.db = db
        self.model = model
        self.dapr = dapr
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.linger = linger
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retention_seconds = retention_seconds
        table = model.__table__  # type: ignore[attr-defined]
        self._table = table
        self._lock_key = zlib.crc32(f"todo-outbox:{table.fullname}".encode())
        self._wake = asyncio.Event()
        self._last_gauges = 0.0
        self._last_cleanup = 0.0
        self._conn: AsyncConnection | None = None
        #: partition key (or, for a row without one, its seq) -> monotonic time it is held until
        self._held_keys: dict[str, float] = {}
        self._held_seqs: dict[int, float] = {}

    def notify(self) -> None:
        """Called after a commit that queued events: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Relay forever (a background task of the service); never gives up while the sidecar is down."""
        try:
            await self._relay_forever()
        finally:
            await self.close()  # releases the relay lock at once for a standby replica

    async def _relay_forever(self) -> None:
        failures = 0
        while True:
            try:
                published, failed = await self.relay_once()
            except Exception as exc:  # database down, or anything else: keep going
                _log.warning("outbox relay cycle failed", error=f"{type(exc).__name__}: {exc}")
                published, failed = 0, True
            if failed and not published:
                failures += 1
                delay = min(self.max_backoff, self.min_backoff * 2 ** min(failures, 16))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                continue
            failures = 0
            if published >= self.batch_size:
                continue  # more is waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_interval)
                # Woken by a commit: wait a moment for the commits right behind it, so that a busy
                # API costs one relay cycle (a read, a bulk publish, an update) per few events
                # rather than per event. Kafka's producer lingers for the same reason.
                await asyncio.sleep(self.linger)

    async def relay_once(self) -> tuple[int, bool]:
        """Publish one batch. Returns (events published, whether the whole relay should back off)."""
        conn = await self._leader_connection()
        if conn is None:
            return 0, False  # another replica relays
        t = self._table
        held_keys, held_seqs = self._held()
        try:
            rows = (
                await conn.execute(
                    select(t.c.seq, t.c.topic, t.c.event_type, t.c.partition_key, t.c.payload, t.c.attempts)
                    .where(
                        t.c.sent_at.is_(None),
                        or_(
                            t.c.partition_key.is_(None),
                            t.c.partition_key != all_(bindparam("held_keys", held_keys, ARRAY(String))),
                        ),
                        t.c.seq != all_(bindparam("held_seqs", held_seqs, ARRAY(BigInteger))),
                    )
                    .order_by(t.c.seq)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                await self._housekeeping(conn)
                return 0, False
            published, failures = await self._publish_batch(rows)
            for row, exc in failures:
                await conn.execute(
                    update(t)
                    .where(t.c.seq == row.seq)
                    .values(attempts=t.c.attempts + 1, last_error=str(exc)[:1000])
                )
                self._hold(row)
            if published:
                await conn.execute(
                    update(t).where(t.c.seq.in_(published)).values(sent_at=func.now(), last_error=None)
                )
            await self._housekeeping(conn)
        except BaseException:
            await self.close(broken=True)  # the lock goes with the connection
            raise
        # one key failing alone says nothing about the sidecar: only its own backoff applies
        failed_keys = {row.partition_key if row.partition_key is not None else row.seq for row, _ in failures}
        return len(published), len(failed_keys) > 1

    def _hold(self, row: Any) -> None:
        """Hold back the key of a row that failed, for a backoff that grows with its attempts."""
        attempts = int(row.attempts) + 1
        delay = min(self.max_backoff, self.min_backoff * 2 ** min(attempts, 16))
        until = time.monotonic() + delay * (0.5 + random.random() / 2)
        if row.partition_key is None:
            self._held_seqs[row.seq] = until
        else:
            self._held_keys[row.partition_key] = until

    def _held(self) -> tuple[list[str], list[int]]:
        """The keys and keyless seqs still held back (expired holds dropped)."""
        now = time.monotonic()
        holds: tuple[dict[Any, float], ...] = (self._held_keys, self._held_seqs)
        for held in holds:
            for key in [key for key, until in held.items() if until <= now]:
                del held[key]
        return list(self._held_keys), list(self._held_seqs)

    async def _leader_connection(self) -> AsyncConnection | None:
        """This replica's relay connection, holding the relay's advisory lock, or None while
        another replica holds it. The lock is kept for as long as the connection lives (one
        pooled connection, in autocommit mode): taking and releasing it every cycle cost four
        round trips per batch. It is released when the connection closes, also when the process
        dies, so a standby replica takes over at its next poll."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = await self.db.engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            locked = (await conn.execute(select(func.pg_try_advisory_lock(self._lock_key)))).scalar()
        except BaseException:
            await conn.close()
            raise
        if not locked:
            await conn.close()
            return None
        self._conn = conn
        return conn

    async def close(self, *, broken: bool = False) -> None:
        """Give up the relay connection (and with it the lock); ``run`` does this when cancelled.
        A connection that failed is dropped without a word to the server: a server that stopped
        answering would hold a polite close (a rollback) for the whole command timeout."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                if broken:
                    await conn.invalidate()
                await conn.close()

    async def _publish_batch(self, rows: Sequence[Any]) -> tuple[list[int], list[tuple[Any, Exception]]]:
        """Publish a batch in rounds of bulk publish calls (one HTTP call per topic per round; a
        call per event caps the relay at about 200 events/s even on an idle machine, since each
        waits for the broker). A round holds at most one event per partition key, the key's
        oldest: an entry of a bulk call can fail while a later one succeeds, so a key's next event
        goes out only in the round after its predecessor was acknowledged, and a key stops at its
        first failure (nothing of that key may overtake it). Rows without a key have no order to
        keep and go out in the first round. Returns the published seqs and the (row, error) that
        stopped a key."""
        queues: dict[object, deque[Any]] = {}
        for row in rows:
            key = row.partition_key if row.partition_key is not None else ("no key", row.seq)
            queues.setdefault(key, deque()).append(row)
        published: list[int] = []
        failures: list[tuple[Any, Exception]] = []
        while queues:
            heads = {key: queue[0] for key, queue in queues.items()}
            by_topic: dict[str, list[tuple[object, Any]]] = {}
            for key, row in heads.items():
                by_topic.setdefault(row.topic, []).append((key, row))
            results = await asyncio.gather(
                *(self._publish_round(topic, items) for topic, items in by_topic.items())
            )
            for items, errors in zip(by_topic.values(), results, strict=True):
                for key, row in items:
                    error = errors.get(str(row.seq))
                    if error is None:
                        published.append(row.seq)
                        EVENTS_PUBLISHED.labels(row.topic, row.event_type).inc()
                        queues[key].popleft()
                        if not queues[key]:
                            del queues[key]
                        continue
                    EVENTS_PUBLISH_FAILED.labels(row.topic, row.event_type).inc()
                    _log.warning(
                        "event publish failed; will retry",
                        event_id=row.payload.get("id"),
                        event_type=row.event_type,
                        error=error,
                    )
                    failures.append((row, RuntimeError(error)))
                    del queues[key]
        return published, failures

    async def _publish_round(self, topic: str, items: list[tuple[object, Any]]) -> dict[str, str]:
        """One bulk publish call; returns {str(seq): error} for the rows that were not published."""
        entries = [BulkEntry(str(row.seq), row.payload, row.partition_key) for _key, row in items]
        try:
            return await self.dapr.publish_bulk(topic, entries)
        except DaprError as exc:
            return {entry.entry_id: str(exc) for entry in entries}

    async def _housekeeping(self, conn: Any) -> None:
        now = time.monotonic()
        t = self._table
        if now - self._last_gauges >= 1.0:
            self._last_gauges = now
            count, oldest = (
                await conn.execute(
                    select(func.count(), func.extract("epoch", func.now() - func.min(t.c.created_at))).where(
                        t.c.sent_at.is_(None)
                    )
                )
            ).one()
            OUTBOX_BACKLOG.set(count)
            OUTBOX_OLDEST_AGE.set(float(oldest or 0.0))
        if now - self._last_cleanup >= 300:
            self._last_cleanup = now
            await conn.execute(
                t.delete().where(
                    t.c.sent_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, self.retention_seconds)
                )
            )
