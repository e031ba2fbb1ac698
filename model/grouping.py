"""A batch's entries grouped by id: the distinct ids whose rows a step reads, where
each entry sits among them, and the entries of each id (the transpose a step's
backward sums over)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from numba import njit

from model.probing import home, table_size


@dataclass(frozen=True)
class UniqueEntries:
    """The distinct ids of a batch's entries, in order of first appearance, and where
    each sits: `inverse` [N] maps entries to unique ids; `order` [N] lists the
    entries grouped by id, the group of unique id u being
    order[starts[u]:starts[u + 1]], ascending."""

    unique: np.ndarray
    inverse: np.ndarray
    order: np.ndarray
    starts: np.ndarray


_Grouped = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _group_py(ids: np.ndarray, mask: int) -> _Grouped:
    """One pass numbers the ids through a hash table of (key, group) cells sized to
    the batch (it stays in cache); a counting sort then lists each group's entries."""
    n = len(ids)
    cells = np.full((mask + 1, 2), -1, np.int64)
    unique = np.empty(n, np.int64)
    inverse = np.empty(n, np.int64)
    starts = np.zeros(n + 1, np.int64)
    groups = 0
    for i in range(n):
        key = ids[i]
        p = home(key, mask)
        while cells[p, 1] >= 0 and cells[p, 0] != key:
            p = (p + 1) & mask
        if cells[p, 1] < 0:
            cells[p, 0] = key
            cells[p, 1] = groups
            unique[groups] = key
            groups += 1
        inverse[i] = cells[p, 1]
        starts[cells[p, 1] + 1] += 1
    starts = np.cumsum(starts[: groups + 1])
    fill = starts[:groups].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[inverse[i]]] = i
        fill[inverse[i]] += 1
    return unique[:groups].copy(), inverse, order, starts


_group = cast(Callable[[np.ndarray, int], _Grouped], njit(cache=True)(_group_py))


def unique_entries(ids: np.ndarray) -> UniqueEntries:
    """Groups int64 entries by id in linear time."""
    return UniqueEntries(
        *_group(np.ascontiguousarray(ids, dtype=np.int64), table_size(len(ids)) - 1)
    )
