from __future__ import annotations

from typing import Any

from deploy.bench.quality import LOGS, summarize


def _report(auc: dict[str, float], ne_by_period: list[float]) -> dict[str, Any]:
    def holdout(a: float, ne: float) -> dict[str, float]:
        return {"auc": a, "logloss": 0.1, "normalized_entropy": ne, "calibration": 1.0}

    periods: list[dict[str, Any]] = [{"models": {m: {"progressive": {}} for m in auc}}]
    periods += [
        {"models": {m: {"holdout": holdout(a, ne)} for m, a in auc.items()}} for ne in ne_by_period
    ]
    return {
        "overall": {m: {"holdout": holdout(a, 0.9)} for m, a in auc.items()},
        "periods": periods,
    }


def test_the_summary_counts_the_seeds_where_the_ordering_held() -> None:
    good = _report({"LR": 0.70, "FM": 0.71, "DeepFM": 0.72}, [0.95, 1.2])
    bad = _report({"LR": 0.72, "FM": 0.71, "DeepFM": 0.73}, [0.9, 0.97])
    summary = summarize(LOGS[0], [good, bad])
    assert summary["ordering_held"] == "1/2"
    deepfm = summary["models"]["DeepFM"]
    assert deepfm["overall"]["auc"] == {"mean": 0.725, "sd": 0.0071}
    assert deepfm["worst_period_ne"]["mean"] == round(
        (1.2 + 0.97) / 2, 4
    )  # period 0 has no holdout
