"""Which snapshots the publisher keeps (the rest it deletes after each publish)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stream.events import DAY_MS


@dataclass(frozen=True)
class Retention:
    """Kept: `LATEST`, the newest `keep` snapshots, the day-end snapshots of the last
    `keep_days` event days (the next-day holdout's), and the promoted snapshots that
    scorers may still have been serving when the impressions the trainer learns now
    were shown: promoted within `served_ms` (the attribution window) in event time,
    which the evaluator's served performance reads."""

    keep: int = 10
    keep_days: int = 7
    served_ms: int = 0

    def kept(
        self,
        versions: Sequence[int],
        manifests: dict[int, dict[str, Any] | None],
        latest: int | None,
    ) -> set[int]:
        days = {
            v: m["newest_ms"] // DAY_MS
            for v, m in manifests.items()
            if m and m.get("trigger") == "day_end" and m.get("newest_ms") is not None
        }
        newest_day = max(days.values(), default=0)
        keep = set(versions[-self.keep :]) | ({latest} if latest is not None else set())
        keep |= {v for v, day in days.items() if day > newest_day - self.keep_days}
        return keep | _served_lately(manifests, self.served_ms)


DEFAULT_RETENTION = Retention()


def _served_lately(manifests: dict[int, dict[str, Any] | None], served_ms: int) -> set[int]:
    """The promoted snapshots served at some point of the last `served_ms` of event time
    (the newest promotion before that span included: it was served at its start)."""
    promoted = sorted(
        (m["promoted_ms"], v)
        for v, m in manifests.items()
        if m and m.get("promoted_ms") is not None and m["gate"]["promoted"]
    )
    if not promoted or served_ms <= 0:
        return set()
    since = promoted[-1][0] - served_ms
    before = [v for at, v in promoted if at <= since]
    return {v for at, v in promoted if at > since} | set(before[-1:])
