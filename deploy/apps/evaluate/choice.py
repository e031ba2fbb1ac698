"""Which snapshot judges an event: the day-end snapshot of the day before (next-day
holdout), and the snapshot scorers were serving when the impression was shown.

Both are read from the manifests the trainer writes. A day-end snapshot of day D
was taken before the trainer learned its first event of a later day, so its
`newest_ms` lies in day D and it never learned an event of day D+1. A promoted
snapshot began to be served at `promoted_ms`, the trainer's input event time at
its promotion; since the trainer learns an impression only once its attribution
window has closed, that input time runs one window behind the impressions shown
at the same moment, and `served_at` adds the window back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.events import DAY_MS


@dataclass(frozen=True)
class Known:
    """What the evaluator needs of one snapshot's manifest."""

    version: int
    trigger: str
    promoted: bool
    newest_ms: int
    promoted_ms: int | None

    @property
    def day(self) -> int:
        """The event day of the newest event it learned."""
        return self.newest_ms // DAY_MS


def known(manifest: dict[str, Any]) -> Known | None:
    """None for a manifest that learned nothing (no event time)."""
    newest = manifest.get("newest_ms")
    if newest is None:
        return None
    gate = manifest.get("gate") or {}
    return Known(
        version=int(manifest["version"]),
        trigger=str(manifest.get("trigger", "")),
        promoted=bool(gate.get("promoted")),
        newest_ms=int(newest),
        promoted_ms=None if manifest.get("promoted_ms") is None else int(manifest["promoted_ms"]),
    )


class SnapshotIndex:
    """The snapshots of one model, refreshed from their manifests (immutable once
    written, so each is read once)."""

    def __init__(
        self,
        versions: Callable[[], Sequence[int]],
        manifest: Callable[[int], dict[str, Any] | None],
        window_ms: int,
    ) -> None:
        self._versions = versions
        self._manifest = manifest
        self._window_ms = window_ms
        self._known: dict[int, Known | None] = {}
        # Served from (promotion + window), and the version, sorted by the former.
        self._starts = np.zeros(0, dtype=np.int64)
        self._served = np.zeros(0, dtype=np.int64)

    def refresh(self) -> None:
        present = set(self._versions())
        new, gone = present - self._known.keys(), self._known.keys() - present
        if not new and not gone:
            return
        for version in sorted(new):
            manifest = self._manifest(version)
            if manifest is not None:
                self._known[version] = known(manifest)
        for version in gone:
            del self._known[version]  # retention deleted it
        served = sorted(
            (k.promoted_ms + self._window_ms, k.version)
            for k in self._known.values()
            if k is not None and k.promoted and k.promoted_ms is not None
        )
        self._starts = np.array([s for s, _ in served], dtype=np.int64)
        self._served = np.array([v for _, v in served], dtype=np.int64)

    def trained_through(self) -> int | None:
        """The newest event time any of its snapshots learned: how far its trainer got."""
        return max((k.newest_ms for k in self._known.values() if k is not None), default=None)

    def holdout_for(self, day: int) -> Known | None:
        """The first day-end snapshot of `day - 1`, or None when there is none (a
        trainer restarted across midnight may publish a second, equivalent one; the
        first stays the answer, so a day is judged by one model)."""
        ends = [
            k
            for k in self._known.values()
            if k is not None and k.trigger == "day_end" and k.day == day - 1
        ]
        return min(ends, key=lambda k: k.version, default=None)

    def served_at(self, ts_ms: np.ndarray) -> np.ndarray:
        """Per impression time, the version promoted last before it; -1 where none was."""
        if not len(self._served):
            return np.full(len(ts_ms), -1, dtype=np.int64)
        at = np.searchsorted(self._starts, np.asarray(ts_ms, dtype=np.int64), side="left")
        return np.where(at > 0, self._served[np.maximum(at - 1, 0)], -1)
