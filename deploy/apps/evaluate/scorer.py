"""Scoring labeled events with published snapshots, opened by the scorers' own code
(verified, read-only rows behind a bounded cache, the trainer's encoder and model)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.apps.serve.snapshot import Loaded, SnapshotError, load
from deploy.apps.train.publish import Verified
from model.errors import FeatureError

_CHUNK = 4_096


class Scorers:
    """The snapshots of one model, the `keep` most recently used held open. A snapshot
    that fails to open is remembered as failed (its error), not retried per event."""

    def __init__(
        self,
        model_dir: Path,
        cache_rows: int,
        keep: int = 3,
        opener: Callable[[Path, int, int, bool, Verified], Loaded] = load,
    ) -> None:
        self._dir = model_dir
        self._cache_rows = cache_rows
        self._keep = keep
        self._open = opener
        self._loaded: OrderedDict[int, Loaded] = OrderedDict()
        self.failed: dict[int, str] = {}
        self._verified: Verified = {}  # the last snapshot's digests, as a scorer keeps them

    def get(self, version: int) -> Loaded | None:
        """The open snapshot, or None when it cannot be opened (`failed` says why)."""
        if version in self.failed:
            return None
        loaded = self._loaded.get(version)
        if loaded is not None:
            self._loaded.move_to_end(version)
            return loaded
        try:
            loaded = self._open(self._dir, version, self._cache_rows, False, self._verified)
        except SnapshotError as exc:
            self.failed[version] = str(exc)
            return None
        self._loaded[version] = loaded
        while len(self._loaded) > self._keep:
            _, oldest = self._loaded.popitem(last=False)
            oldest.close()
        return loaded

    def reason(self, version: int) -> str:
        """Why `get` gave None: "deleted" (retention removed it after the index had
        listed it, e.g. while the evaluator lagged) or "unreadable"."""
        return "unreadable" if (self._dir / f"{version:012d}").exists() else "deleted"

    def close(self) -> None:
        while self._loaded:
            self._loaded.popitem()[1].close()


def score_events(loaded: Loaded, features: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Click probabilities of the events; NaN where an event's features do not fit the
    snapshot's schema (the trainer dead-lettered those)."""
    out = np.full(len(features), np.nan)
    for start in range(0, len(features), _CHUNK):
        chunk = features[start : start + _CHUNK]
        try:
            out[start : start + len(chunk)] = _scores(loaded, chunk)
        except FeatureError:
            for i, one in enumerate(chunk):
                with contextlib.suppress(FeatureError):  # stays NaN
                    out[start + i] = _scores(loaded, [one])[0]
    return out


def _scores(loaded: Loaded, features: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return loaded.trainer.predict_proba_many(loaded.encoder.encode(features))
