from __future__ import annotations

import numpy as np
import pytest

from model.metrics import auc, binary_metrics, logloss


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
