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


# Streaming AUC: scores binned on the logit scale. Pairs that share a bin count
# as ties (half), so |binned AUC - exact AUC| <= ½ Σ_b pos_b·neg_b / (P·N),
# a bound each estimate reports about itself.
_BINS = 1 << 14
_LOGIT_RANGE = 16.0


class StreamingMetrics:
    """Mergeable running metrics of one group in bounded memory (two histograms).

    `auc_bound` is the largest possible difference between `auc` and the exact
    AUC of everything seen, given how the scores fell into bins.
    """

    def __init__(self) -> None:
        self.count = 0
        self.positives = 0
        self.sum_p = 0.0
        self.sum_logloss = 0.0
        self.hist = np.zeros((2, _BINS), dtype=np.int64)

    def update(self, labels: np.ndarray, probs: np.ndarray) -> None:
        y = np.asarray(labels).astype(bool)
        p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0 - _EPS)
        self.count += len(y)
        self.positives += int(y.sum())
        self.sum_p += float(p.sum())
        self.sum_logloss += float(-(np.log(p[y]).sum() + np.log1p(-p[~y]).sum()))
        logit = np.log(p) - np.log1p(-p)
        scaled = (logit + _LOGIT_RANGE) / (2 * _LOGIT_RANGE) * _BINS
        b = np.clip(scaled.astype(np.int64), 0, _BINS - 1)
        self.hist[1] += np.bincount(b[y], minlength=_BINS)
        self.hist[0] += np.bincount(b[~y], minlength=_BINS)

    def merge(self, other: StreamingMetrics) -> StreamingMetrics:
        out = StreamingMetrics()
        out.count = self.count + other.count
        out.positives = self.positives + other.positives
        out.sum_p = self.sum_p + other.sum_p
        out.sum_logloss = self.sum_logloss + other.sum_logloss
        out.hist = self.hist + other.hist
        return out

    def state(self) -> tuple[dict[str, float], np.ndarray]:
        """Scalars and the histogram pair: everything `restored` needs."""
        scalars = {"count": self.count, "positives": self.positives}
        return scalars | {"sum_p": self.sum_p, "sum_logloss": self.sum_logloss}, self.hist

    @classmethod
    def restored(cls, scalars: dict[str, float], hist: np.ndarray) -> StreamingMetrics:
        if hist.shape != (2, _BINS):
            raise ValueError(f"a metrics histogram is (2, {_BINS}), got {hist.shape}")
        out = cls()
        out.count, out.positives = int(scalars["count"]), int(scalars["positives"])
        out.sum_p, out.sum_logloss = float(scalars["sum_p"]), float(scalars["sum_logloss"])
        out.hist = hist.astype(np.int64, copy=True)
        return out

    def _auc_and_bound(self) -> tuple[float, float]:
        neg, pos = self.hist[0].astype(np.float64), self.hist[1].astype(np.float64)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan"), float("nan")
        below = np.cumsum(neg) - neg
        ties = (pos * neg).sum()
        value = ((pos * below).sum() + 0.5 * ties) / (n_pos * n_neg)
        return float(value), float(0.5 * ties / (n_pos * n_neg))

    @property
    def auc(self) -> float:
        return self._auc_and_bound()[0]

    @property
    def auc_bound(self) -> float:
        return self._auc_and_bound()[1]

    def result(self) -> BinaryMetrics:
        n, pos = self.count, self.positives
        ll = self.sum_logloss / n if n else float("nan")
        rate = pos / n if n else float("nan")
        base = (
            float(-(rate * np.log(rate) + (1 - rate) * np.log1p(-rate)))
            if 0 < pos < n
            else float("nan")
        )
        return BinaryMetrics(
            count=n,
            positives=pos,
            auc=self.auc,
            logloss=ll,
            normalized_entropy=ll / base if base == base and base > 0 else float("nan"),
            calibration=(self.sum_p / n) / rate if pos else float("nan"),
        )


class Scores:
    """Labels and predictions of one group: exact metrics up to `EXACT_LIMIT` events,
    then the bounded streaming histograms alone (their AUC error is reported)."""

    EXACT_LIMIT = 500_000

    def __init__(self) -> None:
        self.streaming = StreamingMetrics()
        self._labels: list[np.ndarray] | None = []
        self._probs: list[np.ndarray] = []

    def add(self, labels: np.ndarray, probs: np.ndarray) -> None:
        self.streaming.update(labels, probs)
        if self._labels is None:
            return
        if self.streaming.count > self.EXACT_LIMIT:
            self._labels, self._probs = None, []
            return
        self._labels.append(labels.astype(np.float32))
        self._probs.append(probs.astype(np.float32))

    @property
    def exact(self) -> bool:
        return self._labels is not None

    def metrics(self) -> BinaryMetrics:
        if self._labels is None:
            return self.streaming.result()
        return binary_metrics(np.concatenate(self._labels), np.concatenate(self._probs))

    @property
    def count(self) -> int:
        return self.streaming.count

    @property
    def auc_bound(self) -> float:
        """How far the reported AUC can be from the exact one (0 while exact)."""
        return 0.0 if self.exact else self.streaming.auc_bound

    def state(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Scalars and arrays: everything `restored` needs."""
        scalars, hist = self.streaming.state()
        arrays = {"hist": hist}
        if self._labels is not None:
            empty = np.zeros(0, np.float32)
            arrays["labels"] = np.concatenate(self._labels) if self._labels else empty
            arrays["probs"] = np.concatenate(self._probs) if self._probs else empty
            self._labels, self._probs = [arrays["labels"]], [arrays["probs"]]
        return scalars, arrays

    @classmethod
    def restored(cls, scalars: dict[str, float], arrays: dict[str, np.ndarray]) -> Scores:
        out = cls()
        out.streaming = StreamingMetrics.restored(scalars, arrays["hist"])
        if "labels" in arrays:
            labels, probs = arrays["labels"], arrays["probs"]
            if len(labels) != out.streaming.count or len(probs) != len(labels):
                raise ValueError(
                    f"{len(labels)} labels and {len(probs)} scores for a group of "
                    f"{out.streaming.count}"
                )
            out._labels, out._probs = [labels.astype(np.float32)], [probs.astype(np.float32)]
        else:
            out._labels = None
        return out

    @staticmethod
    def merged(groups: list[Scores]) -> Scores:
        out = Scores()
        for g in groups:
            out.streaming = out.streaming.merge(g.streaming)
            if out._labels is not None and g._labels is not None:
                out._labels += g._labels
                out._probs += g._probs
            else:
                out._labels, out._probs = None, []
        return out


class GroupedMetrics:
    """Streaming metrics per group key (e.g. the event day), mergeable across workers."""

    def __init__(self) -> None:
        self.groups: dict[object, StreamingMetrics] = {}

    def update(self, keys: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> None:
        keys = np.asarray(keys)
        for key in np.unique(keys):
            sel = keys == key
            self.groups.setdefault(key.item(), StreamingMetrics()).update(labels[sel], probs[sel])

    def merge(self, other: GroupedMetrics) -> GroupedMetrics:
        out = GroupedMetrics()
        for key in self.groups.keys() | other.groups.keys():
            mine, theirs = self.groups.get(key), other.groups.get(key)
            if mine and theirs:
                out.groups[key] = mine.merge(theirs)
            else:
                out.groups[key] = (mine or theirs).merge(StreamingMetrics())  # type: ignore[union-attr]
        return out

    def results(self) -> dict[object, BinaryMetrics]:
        return {k: self.groups[k].result() for k in sorted(self.groups, key=str)}


def event_day(ts_ms: np.ndarray) -> np.ndarray:
    """UTC day number of event timestamps in ms."""
    return np.asarray(ts_ms, dtype=np.int64) // 86_400_000
