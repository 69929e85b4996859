"""The one way tests wait for something that happens asynchronously: retry a check until it holds.

A check is a callable taking no arguments. It holds when it returns something truthy (that value is
returned) and does not raise ``AssertionError``. Anything else counts as "not yet": a falsy value or
a failed assertion is remembered, and when time runs out the failure names what was awaited and the
last value or assertion message seen, so a timeout explains itself. Exceptions listed in
``ignoring`` (a service that is not listening yet) count as "not yet" too; any other exception ends
the wait at once, since retrying would hide a real error.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Ignored = tuple[type[BaseException], ...]


class _Attempts:
    """The deadline and the last observation, shared by the sync and async forms."""

    def __init__(self, what: str, within: float, ignoring: Ignored) -> None:
        self.what, self.within = what, within
        self.retryable = (AssertionError, *ignoring)
        self.deadline = time.monotonic() + within
        self.last = "no attempt finished"

    def saw(self, value: object) -> bool:
        """Remember a result; True when it means the check holds."""
        if value:
            return True
        self.last = f"returned {value!r}"
        return False

    def failed(self, error: BaseException) -> None:
        self.last = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def timeout(self) -> AssertionError:
        return AssertionError(f"{self.what}: not within {self.within:g}s; last attempt {self.last}")


def eventually(
    check: Callable[[], T], what: str, *, within: float = 60, interval: float = 0.25, ignoring: Ignored = ()
) -> T:
    """Call ``check`` every ``interval`` seconds until it holds; return its value.

    Raises ``AssertionError`` saying ``what`` did not happen within ``within`` seconds, with the last
    value or assertion message observed.
    """
    attempts = _Attempts(what, within, ignoring)
    while True:
        try:
            value = check()
            if attempts.saw(value):
                return value
        except attempts.retryable as error:
            attempts.failed(error)
        if attempts.expired():
            raise attempts.timeout()
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], Awaitable[T] | T],
    what: str,
    *,
    within: float = 60,
    interval: float = 0.25,
    ignoring: Ignored = (),
) -> T:
    """``eventually`` inside an event loop: sleeps without blocking it, and awaits what ``check``
    returns when that is awaitable (a coroutine function), so plain predicates work too."""
    attempts = _Attempts(what, within, ignoring)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if attempts.saw(value):
                return value
        except attempts.retryable as error:
            attempts.failed(error)
        if attempts.expired():
            raise attempts.timeout()
        await asyncio.sleep(interval)
