"""Small labeled CSV logs with known structure, for judging model quality.

A log is categorical fields with Zipf-distributed values, a click probability
from order-1 effects plus planted pairwise interactions (latent dot products
between chosen field pairs, which a linear model cannot represent), and a
global bias set so that the mean click rate is `ctr`. Rows are spread evenly
over `days` in time order (`ts`, ms), so a replay can cut them by day. The
columns are `label, ts, <field>...`; values are `<field>_<rank>` strings.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.events import DAY_MS

START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC
_LATENT = 4


@dataclass(frozen=True)
class PlantedLog:
    """`fields` are (name, cardinality); `pairs` index into them. `order1` and
    `pair_scale` are the standard deviations of the order-1 effects and of each
    planted pair's dot product."""

    name: str
    fields: tuple[tuple[str, int], ...]
    pairs: tuple[tuple[int, int], ...]
    rows_per_day: int
    days: int
    ctr: float
    order1: float = 0.4
    pair_scale: float = 0.8
    zipf: float = 1.1

    @property
    def rows(self) -> int:
        return self.rows_per_day * self.days


def planted_logits(spec: PlantedLog, ranks: np.ndarray, seed: int) -> np.ndarray:
    """The true logits of rows `ranks` [n, F] before the bias: a pure function of
    (spec, seed), so every part of a log shares one world."""
    rng = np.random.default_rng([seed, 1])
    logit = np.zeros(len(ranks))
    for f, (_, card) in enumerate(spec.fields):
        logit += rng.normal(0.0, spec.order1, card)[ranks[:, f]]
    for a, b in spec.pairs:
        ua = rng.normal(0.0, 1.0, (spec.fields[a][1], _LATENT))
        ub = rng.normal(0.0, 1.0, (spec.fields[b][1], _LATENT))
        dots = np.einsum("nk,nk->n", ua[ranks[:, a]], ub[ranks[:, b]])
        logit += dots * (spec.pair_scale / np.sqrt(_LATENT))
    return logit


def _ranks(spec: PlantedLog, n: int, rng: np.random.Generator) -> np.ndarray:
    cards = np.array([card for _, card in spec.fields])
    # A Zipf draw folded into the cardinality: rank 0 most common.
    ranks: np.ndarray = (rng.zipf(spec.zipf, (n, len(cards))) - 1) % cards
    return ranks


def _bias_for(logit: np.ndarray, ctr: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < ctr:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def write_planted_log(spec: PlantedLog, path: Path, seed: int) -> dict[str, float]:
    """Writes the log as CSV with a header; returns its realized click rate and the
    mean true click probability."""
    rng = np.random.default_rng([seed, 2])
    ranks = _ranks(spec, spec.rows, rng)
    logit = planted_logits(spec, ranks, seed)
    p = 1.0 / (1.0 + np.exp(-(logit + _bias_for(logit, spec.ctr))))
    labels = (rng.random(spec.rows) < p).astype(int)
    ts = START_MS + (np.arange(spec.rows) * (spec.days * DAY_MS // spec.rows))
    names = [name for name, _ in spec.fields]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["label", "ts", *names])
        for i in range(spec.rows):
            values = [f"{name}_{r}" for name, r in zip(names, ranks[i].tolist(), strict=True)]
            out.writerow([labels[i], int(ts[i]), *values])
    return {"ctr": float(labels.mean()), "mean_p": float(p.mean())}


# The pairs join fields of up to a few hundred values, so that one pass over the
# log holds enough co-occurrences to learn them; the high-cardinality fields
# (user, advertiser, ad) carry order-1 effects only, as noise an FM must not fit.
PAIRS_LOG = PlantedLog(
    name="planted-pairs",
    fields=(
        ("site", 200),
        ("app", 50),
        ("ad", 1000),
        ("slot", 20),
        ("user", 5000),
        ("device", 10),
        ("city", 300),
        ("category", 80),
        ("advertiser", 2000),
        ("hour", 24),
        ("os", 8),
        ("campaign", 500),
    ),
    pairs=((3, 7), (9, 7), (5, 1), (10, 3), (0, 7), (1, 9)),
    rows_per_day=15_000,
    days=6,
    ctr=0.04,
)

# fmt: off
_CRITEO_LIKE_CARDS = (
    50, 100, 20, 500, 1000, 10, 200, 30, 5000, 8, 300, 40, 2000,
    15, 700, 60, 3, 400, 90, 1500, 25, 6, 250, 120, 800, 12,
)
# fmt: on
# 39 fields as in Criteo (13 bucketized counts of 10 values, 26 categorical), a
# 25% click rate, 2,000 rows a day for 5 days: a small log where many fields and
# few rows make an embedding model over-confident before it has evidence.
CRITEO_LIKE_LOG = PlantedLog(
    name="criteo-like",
    fields=tuple((f"C{i + 1}", card) for i, card in enumerate(_CRITEO_LIKE_CARDS))
    + tuple((f"I{i + 1}", 10) for i in range(13)),
    pairs=((0, 2), (5, 7), (9, 13), (15, 20), (26, 27)),
    rows_per_day=2_000,
    days=5,
    ctr=0.25,
    order1=0.3,
    pair_scale=0.6,
)

LOW_CTR_LOG = PlantedLog(
    name="low-ctr",
    fields=(("item", 80), ("position", 5), ("age", 6), ("gender", 3), ("device", 4)),
    pairs=((0, 2), (0, 3)),
    rows_per_day=10_000,
    days=7,
    ctr=0.004,
    order1=0.5,
    pair_scale=0.5,
)

# The low-CTR log with 60 weak, low-cardinality fields more (bucketized affinities,
# as a bandit log's user-item scores): many fields move one logit at once.
LOW_CTR_WIDE_LOG = PlantedLog(
    name="low-ctr-wide",
    fields=LOW_CTR_LOG.fields + tuple((f"affinity_{i}", 10) for i in range(60)),
    pairs=LOW_CTR_LOG.pairs,
    rows_per_day=10_000,
    days=7,
    ctr=0.004,
    order1=0.1,
    pair_scale=0.5,
)
