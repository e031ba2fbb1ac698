"""The garbage collector's settings for a streaming daemon."""

from __future__ import annotations

import gc

# A join batch allocates tens of thousands of short-lived objects (records,
# events, encodings). At CPython's default of 700 allocations a young
# collection runs many times per batch and promotes whatever the batch still
# holds, so full collections, which walk every live object, follow often: a
# quarter to a third of the joiner's time in `fmstream bench join`. Garbage
# without cycles is freed by reference counting at any threshold, so memory
# barely grows.
_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once started: what is alive now (modules, torch's among them, configuration)
    lives as long as the process, so the collector stops walking it, and young
    collections run less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, older, oldest)
