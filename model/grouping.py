"""A batch's entries grouped by id: the distinct ids whose rows a step reads, where
each entry sits among them, and the entries of each id (the transpose a step's
backward sums over)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.hashing import splitmix64


@dataclass(frozen=True)
class UniqueEntries:
    """The distinct ids of a batch's entries (in an order fixed by their hashes) and
    where each sits: `inverse` [N] maps entries to unique ids; `order` [N] lists the
    entries grouped by id, the group of unique id u being
    order[starts[u]:starts[u + 1]], ascending."""

    unique: np.ndarray
    inverse: np.ndarray
    order: np.ndarray
    starts: np.ndarray


def unique_entries(ids: np.ndarray) -> UniqueEntries:
    """Groups entries by id with one sort of packed uint64 keys, (hash of the id, entry
    position): about twice as fast as numpy's argsort of the ids, and entries come out
    ascending within each group. Two ids whose hashes share the kept high bits would
    split a group; then the slower exact grouping runs instead."""
    n = len(ids)
    bits = np.uint64(max(1, (n - 1).bit_length()))
    keys = (splitmix64(ids.view(np.uint64)) >> bits) << bits
    keys |= np.arange(n, dtype=np.uint64)
    keys.sort()
    order = (keys & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.int64)
    entries = _grouped(ids, order)
    prefixes = keys >> bits
    if len(entries.unique) == 1 + np.count_nonzero(prefixes[1:] != prefixes[:-1]):
        return entries
    return _exact_unique_entries(ids)


def _grouped(ids: np.ndarray, order: np.ndarray) -> UniqueEntries:
    """The groups of `order`, a permutation of the entries that puts equal ids side by side."""
    n = len(ids)
    ordered = ids[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    starts = np.append(np.flatnonzero(first), n)
    return UniqueEntries(ordered[first], inverse, order, starts)


def _exact_unique_entries(ids: np.ndarray) -> UniqueEntries:
    # A stable sort keeps entries ascending within each group.
    return _grouped(ids, np.argsort(ids, kind="stable"))
