"""Which snapshots the publisher keeps."""

from __future__ import annotations

from typing import Any

from deploy.apps.train.retention import Retention
from stream.events import DAY_MS


def _manifest(version: int, promoted_ms: int | None, trigger: str = "interval") -> dict[str, Any]:
    return {
        "version": version,
        "trigger": trigger,
        "newest_ms": promoted_ms or version,
        "promoted_ms": promoted_ms,
        "gate": {"promoted": promoted_ms is not None},
    }


def test_snapshots_served_within_the_window_are_kept_beside_the_newest() -> None:
    minute = 60_000
    manifests: dict[int, dict[str, Any] | None] = {
        v: _manifest(v, DAY_MS + v * minute) for v in range(1, 41)
    }
    manifests[35] = _manifest(35, None)  # refused: never served
    kept = Retention(keep=3, keep_days=7, served_ms=10 * minute).kept(
        sorted(manifests), manifests, latest=40
    )
    # Promoted after minute 30 (40 - 10), and 30 itself: it was served when that span began.
    assert kept == set(range(30, 41)) - {35} | {38, 39, 40}


def test_without_a_window_only_the_newest_latest_and_day_ends_stay() -> None:
    manifests: dict[int, dict[str, Any] | None] = {
        1: _manifest(1, 1_000, "day_end"),
        2: _manifest(2, 2_000),
        3: _manifest(3, DAY_MS + 1_000, "day_end"),
        4: _manifest(4, 2 * DAY_MS),
        5: _manifest(5, 2 * DAY_MS + 1),
    }
    assert Retention(keep=1, keep_days=1).kept(sorted(manifests), manifests, latest=4) == {3, 4, 5}
