"""The collector settings a service process gets before it serves (todo.common.heap)."""

from __future__ import annotations

import gc

from todo.common.heap import GEN0_THRESHOLD, settle_heap


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000  # the imported modules, at least
        assert gc.get_threshold() == (GEN0_THRESHOLD, *before[1:])
        assert gc.isenabled()  # collections still run, less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
