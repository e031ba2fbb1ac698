"""The home cell of a key in an open-addressing table, for the compiled probe loops
of `model.slotmap` and `model.grouping`.

splitmix64 of the key, masked to the table: ids are hashes already, but a crafted
or sequential set of ids must not pile up in one probe chain.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def _home_py(key: int, mask: int) -> int:
    z = np.uint64(key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return int(np.int64(z & np.uint64(mask)))


home = njit(cache=True, inline="always")(_home_py)


def table_size(entries: int) -> int:
    """The smallest power of two (at least 8) with room for `entries` at load <= 1/2."""
    size = 8
    while size < 2 * entries:
        size *= 2
    return size
