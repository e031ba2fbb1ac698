from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from stream.events import DAY_MS
from stream.simulate.planted import LOW_CTR_LOG, PAIRS_LOG, write_planted_log


def test_a_planted_log_has_its_click_rate_days_and_columns(tmp_path: Path) -> None:
    spec = dataclasses.replace(LOW_CTR_LOG, rows_per_day=20_000, days=2)
    path = tmp_path / "low.csv"
    summary = write_planted_log(spec, path, seed=3)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["label", "ts", "item", "position", "age", "gender", "device"]
    assert len(rows) == 40_000
    labels = np.array([int(r["label"]) for r in rows])
    assert abs(labels.mean() - 0.004) < 0.0015 and summary["ctr"] == labels.mean()
    ts = np.array([int(r["ts"]) for r in rows])
    assert (np.diff(ts) >= 0).all() and ts[-1] - ts[0] < 2 * DAY_MS
    assert {r["position"] for r in rows} <= {f"position_{i}" for i in range(5)}


def test_the_same_seed_writes_the_same_log(tmp_path: Path) -> None:
    spec = dataclasses.replace(PAIRS_LOG, rows_per_day=500, days=2)
    a, b, c = (tmp_path / n for n in ("a.csv", "b.csv", "c.csv"))
    write_planted_log(spec, a, seed=1)
    write_planted_log(spec, b, seed=1)
    write_planted_log(spec, c, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
