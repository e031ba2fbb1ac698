"""The paper's metrics for binary click prediction: AUC, logloss, NE, calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


@dataclass(frozen=True)
class BinaryMetrics:
    count: int
    positives: int
    auc: float
    logloss: float
    normalized_entropy: float
    calibration: float


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC with ties counted as half (Mann-Whitney U); NaN without both classes."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # Average rank of each run of equal scores, so ties count half.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.repeat(avg_rank, ends - starts)
    rank_sum = ranks[y[order]].sum()
    return float((rank_sum - pos * (pos + 1) / 2.0) / (pos * neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0 - _EPS)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> BinaryMetrics:
    """All metrics of one group of predictions (NE = logloss / entropy of the base rate)."""
    y = np.asarray(labels, dtype=np.float64)
    n = len(y)
    positives = int(y.sum())
    ll = logloss(y, probs) if n else float("nan")
    rate = positives / n if n else float("nan")
    base = logloss(y, np.full(n, rate)) if 0 < positives < n else float("nan")
    mean_p = float(np.mean(probs)) if n else float("nan")
    return BinaryMetrics(
        count=n,
        positives=positives,
        auc=auc(y, probs),
        logloss=ll,
        normalized_entropy=ll / base if base == base and base > 0 else float("nan"),
        calibration=mean_p / rate if positives else float("nan"),
    )
