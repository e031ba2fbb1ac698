"""Admission: an id gets a row of its own only after it has been seen `threshold` times.

Occurrences are counted in bounded memory with a count-min sketch (counts can
only be over-estimated, so an id is at worst admitted early). Until admitted,
an id reads and trains its field's shared default row.
"""

from __future__ import annotations

import numpy as np

from store.mixing import mix64


class CountMinSketch:
    """`depth` rows of `width` uint32 counters; memory is depth * width * 4 bytes."""

    def __init__(self, width: int = 1 << 22, depth: int = 4, seed: int = 0) -> None:
        if width < 1 or depth < 1:
            raise ValueError(f"a count-min sketch needs width and depth >= 1, got {width}x{depth}")
        self.width, self.depth = width, depth
        self._table = np.zeros((depth, width), dtype=np.uint32)
        self._salts = mix64(np.arange(depth, dtype=np.uint64) + np.uint64(seed))

    def _cells(self, ids: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)
        hashed = mix64(keys[None, :] ^ self._salts[:, None])
        return np.asarray(hashed % np.uint64(self.width), dtype=np.int64)

    def add(self, ids: np.ndarray) -> None:
        cells = self._cells(ids)
        for row in range(self.depth):
            np.add.at(self._table[row], cells[row], 1)

    def state(self) -> np.ndarray:
        """The counters, to checkpoint beside the rows they admitted."""
        return self._table

    def restore(self, table: np.ndarray) -> None:
        if table.shape != self._table.shape:
            raise ValueError(
                f"a sketch of {table.shape[0]}x{table.shape[1]} counters cannot restore one "
                f"of {self.depth}x{self.width}"
            )
        self._table[...] = table

    def estimate(self, ids: np.ndarray) -> np.ndarray:
        cells = self._cells(ids)
        return np.asarray(np.min(self._table[np.arange(self.depth)[:, None], cells], axis=0))


class Admission:
    """Per-field thresholds over one sketch; `default_ids[f]` is field f's shared row."""

    def __init__(
        self, thresholds: np.ndarray, default_ids: np.ndarray, sketch: CountMinSketch
    ) -> None:
        if len(thresholds) != len(default_ids):
            raise ValueError("one threshold and one default id per field")
        self.thresholds = np.asarray(thresholds, dtype=np.int64)
        self.default_ids = np.asarray(default_ids, dtype=np.int64)
        self.sketch = sketch
        self.admitted = 0
        self.deferred = 0

    def __call__(self, ids: np.ndarray, fields: np.ndarray, count: bool) -> np.ndarray:
        """The ids to use: each id itself once admitted, else its field's default id."""
        if count:
            self.sketch.add(ids)
        seen = self.sketch.estimate(ids)
        admitted = seen >= self.thresholds[fields]
        if count:
            self.admitted += int(admitted.sum())
            self.deferred += int((~admitted).sum())
        return np.where(admitted, ids, self.default_ids[fields])
