"""testbed.polling: a check is retried until it holds, and a timeout says what was last observed."""

import asyncio
import itertools

import pytest
from testbed.polling import eventually, eventually_async


def test_returns_the_first_truthy_value_after_failed_attempts():
    calls = itertools.count(1)

    def check():
        n = next(calls)
        assert n >= 3, f"attempt {n}"
        return n

    assert eventually(check, "the third attempt", within=5, interval=0) == 3


def test_a_timeout_names_what_was_awaited_and_the_last_assertion_message():
    calls = itertools.count(1)

    def check():
        n = next(calls)
        assert n < 0, f"attempt {n} saw the queue at {n * 10}"

    with pytest.raises(
        AssertionError,
        match=r"the queue drained: not within 0\.05s; last attempt "
        r"AssertionError: attempt \d+ saw the queue at \d+0",
    ):
        eventually(check, "the queue drained", within=0.05, interval=0.01)


def test_a_timeout_shows_the_last_falsy_value():
    with pytest.raises(AssertionError, match=r"last attempt returned \[\]"):
        eventually(list, "a non-empty list", within=0.02, interval=0.01)


def test_listed_exceptions_are_retried_and_others_end_the_wait_at_once():
    attempts = itertools.count(1)

    def refused_then_up():
        if next(attempts) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert eventually(refused_then_up, "the server", within=5, interval=0, ignoring=(OSError,)) == "up"
    calls = itertools.count(1)

    def broken():
        next(calls)
        raise KeyError("a bug, not a wait")

    with pytest.raises(KeyError):
        eventually(broken, "anything", within=5, interval=0)
    assert next(calls) == 2, "an unexpected error must not be retried"


def test_the_async_form_awaits_the_check_and_reports_the_same_way():
    calls = itertools.count(1)

    async def check():
        await asyncio.sleep(0)
        return next(calls) >= 2 and "done"

    assert asyncio.run(eventually_async(check, "two attempts", within=5, interval=0)) == "done"

    async def never():
        return None

    with pytest.raises(AssertionError, match=r"nothing: not within 0\.02s; last attempt returned None"):
        asyncio.run(eventually_async(never, "nothing", within=0.02, interval=0.01))
