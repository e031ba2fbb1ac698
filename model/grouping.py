"""A batch's entries grouped by id: the distinct ids whose rows a step reads, where
each entry sits among them, and the entries of each id (the transpose a step's
backward sums over)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.kernels import group, table_size


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


def unique_entries(ids: np.ndarray) -> UniqueEntries:
    """Groups int64 entries by id in linear time.

    A batch repeats its ids (a field's common values, the missing ids), so the
    table first gets one cell per entry, small enough to stay in cache; a batch
    of mostly distinct ids overflows it and is grouped again in a table twice
    that size."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    grouped = group(ids, table_size(len(ids) // 2) - 1)
    if len(grouped[3]) == 0:
        grouped = group(ids, table_size(len(ids)) - 1)
    return UniqueEntries(*grouped)
