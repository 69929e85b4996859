"""Garbage-collector and allocator settings for a long-running service process.

CPython's cyclic collector is tuned for short scripts. In a service it cost the backend about a
tenth of its CPU under load and paused the event loop for 100–150 ms whenever a full collection
scanned the heap (docs/performance.md, "Backend API: what moved the figures"). Request handling
here creates next to no reference cycles (measured: under 1 cyclic object per request), so
collecting less often frees the same garbage for much less work.
"""

from __future__ import annotations

import ctypes
import gc

#: Young-generation threshold (CPython's default is 700). Requests keep thousands of container
#: objects alive while in flight, so at 700 a collection ran about every tenth request; at this
#: value one runs every few seconds under load and takes a few milliseconds.
GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once the app is built, before serving: collect the start-up garbage, then move every
    surviving object (modules, the app, its schemas and table metadata) to the permanent generation
    so later full collections never scan them again. Objects still die as usual when unreferenced.
    Large blocks are kept out of the heap (``return_large_blocks_to_the_os``)."""
    return_large_blocks_to_the_os()
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


#: glibc's M_MMAP_THRESHOLD parameter of mallopt, and the threshold kept (glibc's initial value).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_blocks_to_the_os() -> None:
    """Each argon2 password hash allocates 19 MiB. glibc raises its mmap threshold after the first
    such block is freed, so later ones come from per-thread heaps and stay resident (~100 MB after a
    few logins). A fixed threshold keeps large blocks mmap-ed: they go back to the OS when freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
