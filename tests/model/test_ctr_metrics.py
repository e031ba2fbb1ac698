from __future__ import annotations

import numpy as np
import pytest

from model.ctr_metrics import (
    GroupedMetrics,
    StreamingMetrics,
    auc,
    binary_metrics,
    event_day,
    logloss,
)


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_brute_force_pairwise_auc_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(600) < 0.2
    s = np.round(rng.random(600) + 0.3 * y, 1)  # coarse scores: many ties
    assert auc(y, s) == pytest.approx(_pairwise_auc(y.astype(int), s), abs=1e-12)


def test_auc_extremes_and_degenerate_input() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(y, np.full(4, 0.5)) == 0.5
    assert np.isnan(auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))


def test_logloss_ne_and_calibration() -> None:
    y = np.array([1, 0, 0, 0])
    p = np.array([0.5, 0.25, 0.25, 0.25])
    expected = -(np.log(0.5) + 3 * np.log(0.75)) / 4
    assert logloss(y, p) == pytest.approx(expected)
    m = binary_metrics(y, p)
    assert (m.count, m.positives) == (4, 1)
    base = -(np.log(0.25) + 3 * np.log(0.75)) / 4
    assert m.normalized_entropy == pytest.approx(expected / base)
    assert m.calibration == pytest.approx(0.3125 / 0.25)
    # Predicting the base rate has NE 1 and perfect calibration.
    flat = binary_metrics(y, np.full(4, 0.25))
    assert flat.normalized_entropy == pytest.approx(1.0)
    assert flat.calibration == pytest.approx(1.0)


def test_streaming_auc_is_within_its_stated_bound_and_merges() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(200_000) < 0.04
    logits = rng.normal(-3.5, 1.0, len(y)) + 1.2 * y
    p = 1 / (1 + np.exp(-logits))
    halves = [StreamingMetrics(), StreamingMetrics()]
    halves[0].update(y[:90_000], p[:90_000])
    halves[1].update(y[90_000:], p[90_000:])
    merged = halves[0].merge(halves[1])
    whole = StreamingMetrics()
    whole.update(y, p)
    exact = binary_metrics(y, p)
    assert merged.auc == whole.auc
    assert abs(merged.auc - exact.auc) <= merged.auc_bound < 1e-3
    streamed = merged.result()
    assert streamed.count == exact.count and streamed.positives == exact.positives
    assert streamed.logloss == pytest.approx(exact.logloss, rel=1e-9)
    assert streamed.normalized_entropy == pytest.approx(exact.normalized_entropy, rel=1e-9)
    assert streamed.calibration == pytest.approx(exact.calibration, rel=1e-9)


def test_grouped_metrics_by_event_day() -> None:
    day_ms = 86_400_000
    ts = np.array([0, 10, day_ms + 5, day_ms + 6, 2 * day_ms])
    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.1, 0.2, 0.8, 0.5])
    a, b = GroupedMetrics(), GroupedMetrics()
    a.update(event_day(ts[:3]), y[:3], p[:3])
    b.update(event_day(ts[3:]), y[3:], p[3:])
    results = a.merge(b).results()
    assert list(results) == [0, 1, 2]
    assert results[0].auc == 1.0 and results[1].auc == 0.0
    assert results[2].count == 1 and np.isnan(results[2].auc)
