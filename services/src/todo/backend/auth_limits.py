"""Limits on the anonymous, expensive routes (register, login): attempts per client and per account,
and how many password hashes run at once.

Each argon2id hash holds 19 MiB for its duration. Without a bound, the thread pool runs as many as it
has threads (the container's CPU count + 4, up to 32), and a flood of logins takes the backend past
its memory limit. Counters live in the process: each replica limits what reaches it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from todo.common.errors import ProblemError
from todo.common.metrics import AUTH_REFUSED


class RateLimiter:
    """A token bucket per key: ``burst`` attempts at once, refilled at ``per_minute``. At most
    ``max_keys`` keys are remembered; the least recently seen is forgotten first (it would have
    refilled by the time it mattered, or the table is under a flood of one-off keys anyway)."""

    def __init__(self, per_minute: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one attempt of ``key``: 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class AuthLimits:
    """What register and login check before they hash a password."""

    def __init__(
        self,
        *,
        client_per_minute: float,
        client_burst: int,
        account_per_minute: float,
        account_burst: int,
        hash_concurrency: int,
        hash_queue: int,
    ) -> None:
        self.per_client = RateLimiter(client_per_minute, client_burst)
        self.per_account = RateLimiter(account_per_minute, account_burst)
        self._hash_slots = asyncio.Semaphore(hash_concurrency)
        self._hash_queue = hash_queue
        self._waiting = 0

    def admit(self, client: str, account: str) -> None:
        """Raise 429 (with Retry-After) when the client or the account has used its attempts."""
        for scope, limiter, key in (
            ("client", self.per_client, client),
            ("account", self.per_account, account.strip().lower()),
        ):
            wait = limiter.take(key)
            if wait > 0:
                AUTH_REFUSED.labels(scope).inc()
                raise ProblemError(
                    429,
                    "too-many-requests",
                    f"Too many attempts from this {scope}; retry after the time in Retry-After.",
                    headers={"Retry-After": str(math.ceil(wait))},
                )

    @asynccontextmanager
    async def hashing(self) -> AsyncIterator[None]:
        """One of the few password-hash slots; 503 at once when too many requests already wait."""
        if self._hash_slots.locked() and self._waiting >= self._hash_queue:
            AUTH_REFUSED.labels("busy").inc()
            raise ProblemError(
                503,
                "busy",
                "Too many sign-ins are being checked at once; retry shortly.",
                headers={"Retry-After": "1"},
            )
        self._waiting += 1
        try:
            await self._hash_slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._hash_slots.release()
