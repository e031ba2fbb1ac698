"""A batch's entries grouped by id: the distinct ids whose rows a step reads, where
each entry sits among them, and the entries of each id (the transpose a step's
backward sums over)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from model.probing import compiled, home, table_size


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
    """One pass numbers the ids through a hash table of (key, group) cells; a counting
    sort then lists each group's entries. Returns empty arrays if the ids fill half
    the table (the caller retries with a larger one)."""
    n = len(ids)
    keys = np.empty(mask + 1, np.int64)
    group_of = np.full(mask + 1, -1, np.int32)
    unique = np.empty(n, np.int64)
    inverse = np.empty(n, np.int64)
    starts = np.zeros(n + 1, np.int64)
    groups = 0
    for i in range(n):
        key = ids[i]
        p = home(key, mask)
        while group_of[p] >= 0 and keys[p] != key:
            p = (p + 1) & mask
        if group_of[p] < 0:
            if 2 * groups > mask:
                return unique[:0], inverse[:0], inverse[:0], starts[:0]
            keys[p] = key
            group_of[p] = groups
            unique[groups] = key
            groups += 1
        inverse[i] = group_of[p]
        starts[inverse[i] + 1] += 1
    starts = np.cumsum(starts[: groups + 1])
    fill = starts[:groups].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[inverse[i]]] = i
        fill[inverse[i]] += 1
    return unique[:groups].copy(), inverse, order, starts


_group = cast(Callable[[np.ndarray, int], _Grouped], compiled(_group_py))


def unique_entries(ids: np.ndarray) -> UniqueEntries:
    """Groups int64 entries by id in linear time.

    A batch repeats its ids (a field's common values, the missing ids), so the
    table first gets one cell per entry, small enough to stay in cache; a batch
    of mostly distinct ids overflows it and is grouped again in a table twice
    that size."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    grouped = _group(ids, table_size(len(ids) // 2) - 1)
    if len(grouped[3]) == 0:
        grouped = _group(ids, table_size(len(ids)) - 1)
    return UniqueEntries(*grouped)
