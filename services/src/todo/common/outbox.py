"""Transactional outbox: events are written with the change, in the same transaction, and a relay
publishes them through Dapr afterwards.

Guarantees: an event is published at least once (consumers drop repeats by event id); events with
the same partition key are published in the order they were written (the relay publishes a key's
rows by sequence and stops that key at its first failure; different keys go out concurrently); a
single relay runs at a time across replicas (PostgreSQL advisory lock). While Kafka or the sidecar
is down, writes still succeed and the relay retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from todo.common.dapr import DaprClient
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
        return (Index(f"ix_{cls.__tablename__}_unsent", "seq", postgresql_where=text("sent_at IS NULL")),)


def add_event(
    session: AsyncSession,
    model: type[OutboxMixin],
    topic: str,
    event: dict[str, Any],
    partition_key: str | None,
) -> OutboxMixin:
    """Queue ``event`` (a built CloudEvent) for publishing; commits with the caller's transaction."""
    row = model(
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
        concurrency: int = 16,
        idle_interval: float = 1.0,
        min_backoff: float = 0.2,
        max_backoff: float = 5.0,
        retention_seconds: int = 86400,
    ) -> None:
        self.db = db
        self.model = model
        self.dapr = dapr
        self.batch_size = batch_size
        #: Partition keys published at the same time (each key stays in order).
        self.concurrency = concurrency
        self.idle_interval = idle_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retention_seconds = retention_seconds
        table = model.__table__  # type: ignore[attr-defined]
        self._table = table
        self._lock_key = zlib.crc32(f"todo-outbox:{table.fullname}".encode())
        self._wake = asyncio.Event()
        self._last_gauges = 0.0
        self._last_cleanup = 0.0

    def notify(self) -> None:
        """Called after a commit that queued events: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Relay forever (a background task of the service); never gives up while the sidecar is down."""
        failures = 0
        while True:
            try:
                published, failed = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, or anything else: keep going
                _log.warning("outbox relay cycle failed", error=f"{type(exc).__name__}: {exc}")
                published, failed = 0, True
            if failed:
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

    async def relay_once(self) -> tuple[int, bool]:
        """Publish one batch. Returns (events published, whether a publish failed)."""
        t = self._table
        published: list[int] = []
        failed = False
        async with self.db.engine.connect() as conn:
            locked = (await conn.execute(select(func.pg_try_advisory_lock(self._lock_key)))).scalar()
            await conn.commit()
            if not locked:
                return 0, False  # another replica relays
            try:
                rows = (
                    await conn.execute(
                        select(t.c.seq, t.c.topic, t.c.event_type, t.c.partition_key, t.c.payload)
                        .where(t.c.sent_at.is_(None))
                        .order_by(t.c.seq)
                        .limit(self.batch_size)
                    )
                ).all()
                await conn.commit()
                published, failures = await self._publish_batch(rows)
                failed = bool(failures)
                for row, exc in failures:
                    await conn.execute(
                        update(t)
                        .where(t.c.seq == row.seq)
                        .values(attempts=t.c.attempts + 1, last_error=str(exc)[:1000])
                    )
                if published:
                    await conn.execute(
                        update(t).where(t.c.seq.in_(published)).values(sent_at=func.now(), last_error=None)
                    )
                await conn.commit()
                await self._housekeeping(conn)
            finally:
                await conn.execute(select(func.pg_advisory_unlock(self._lock_key)))
                await conn.commit()
        return len(published), failed

    async def _publish_batch(self, rows: list[Any]) -> tuple[list[int], list[tuple[Any, Exception]]]:
        """Publish a batch: rows of one partition key one after the other, in sequence order, and
        stopping at the first failure (nothing of that key may overtake it); different keys
        concurrently, since one publish waits for the broker's acknowledgement and one at a time
        caps the relay at a few dozen events per second. Returns the published seqs and the
        (row, error) that stopped a key."""
        by_key: dict[str | None, list[Any]] = {}
        for row in rows:
            by_key.setdefault(row.partition_key, []).append(row)
        published: list[int] = []
        failures: list[tuple[Any, Exception]] = []
        slots = asyncio.Semaphore(self.concurrency)

        async def publish_key(key_rows: list[Any]) -> None:
            async with slots:
                for row in key_rows:
                    try:
                        await self._publish(row)
                    except Exception as exc:
                        EVENTS_PUBLISH_FAILED.labels(row.topic, row.event_type).inc()
                        _log.warning(
                            "event publish failed; will retry",
                            event_id=row.payload.get("id"),
                            event_type=row.event_type,
                            error=str(exc),
                        )
                        failures.append((row, exc))
                        return
                    published.append(row.seq)
                    EVENTS_PUBLISHED.labels(row.topic, row.event_type).inc()

        await asyncio.gather(*(publish_key(key_rows) for key_rows in by_key.values()))
        return published, failures

    async def _publish(self, row: Any) -> None:
        event = row.payload
        headers: dict[str, str] = {}
        if isinstance(event.get("traceparent"), str):
            headers["traceparent"] = event["traceparent"]
        if isinstance(event.get("requestid"), str):
            headers["X-Request-ID"] = event["requestid"]
        await self.dapr.publish(row.topic, event, partition_key=row.partition_key, headers=headers)

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
            await conn.commit()
        if now - self._last_cleanup >= 300:
            self._last_cleanup = now
            await conn.execute(
                t.delete().where(
                    t.c.sent_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, self.retention_seconds)
                )
            )
            await conn.commit()
