"""On simulated traffic with known truth: the paper's ranking and the planted interactions.

Train on days 0-3 in one online pass, hold out day 4 (next-day holdout). The
world is the simulator's with a smaller user and ad universe and a 10% click
rate, so that 600,000 events carry enough signal for a CPU test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from model.ctr_metrics import auc
from model.features import FeatureEncoder, infer_schema
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from stream.simulate import SimulationConfig
from stream.simulate.world import MEAL_HOURS, PLANTED_TRIPLES
from tests.simulated import LabeledDay, labeled_days

WORLD = SimulationConfig(
    seed=7,
    days=5,
    impressions_per_day=150_000,
    users=5_000,
    items=500,
    new_items_per_day=50,
    ctr=0.1,
)
BATCH = 512


@pytest.fixture(scope="module")
def holdout() -> dict[str, np.ndarray]:
    days = labeled_days(WORLD)
    schema = infer_schema(days[0].features[:1000])
    encoder = FeatureEncoder(schema)
    train, test = days[:-1], days[-1]
    test_batches = [
        encoder.encode(test.features[i : i + 4096]) for i in range(0, len(test.labels), 4096)
    ]
    scores: dict[str, np.ndarray] = {"truth": test.p_label, "labels": test.labels}
    models = {
        "lr": ModelConfig(name="lr"),
        "fm": ModelConfig(name="fm"),
        # Section 3.3: keep-probability 0.6-0.9 and 200-400 neurons are the paper's best.
        "deepfm": ModelConfig(name="deepfm", dropout_keep=0.9, neurons=200),
    }
    for name, config in models.items():
        trainer = OnlineTrainer(config, len(schema.fields), TrainerConfig(device="cpu", seed=1))
        for day in train:
            for i in range(0, len(day.labels), BATCH):
                trainer.learn_many(
                    encoder.encode(day.features[i : i + BATCH]), day.labels[i : i + BATCH]
                )
        scores[name] = np.concatenate([trainer.predict_proba_many(b) for b in test_batches])
    scores["food"] = _mask(test, lambda f: f["category"] == "food")
    scores["meal"] = _mask(test, lambda f: int(f["hour"]) in MEAL_HOURS)
    planted = {(g, a, c) for g, a, c, _ in PLANTED_TRIPLES}
    categories = {c for _, _, c in planted}
    scores["triple_category"] = _mask(test, lambda f: f["category"] in categories)
    scores["triple"] = _mask(test, lambda f: (f["gender"], f["age"], f["category"]) in planted)
    return scores


def _mask(day: LabeledDay, pred: Callable[[dict[str, Any]], bool]) -> np.ndarray:
    return np.array([bool(pred(f)) for f in day.features])


def test_deepfm_beats_fm_beats_lr_on_the_next_day(holdout: dict[str, np.ndarray]) -> None:
    y = holdout["labels"]
    result = {m: auc(y, holdout[m]) for m in ("truth", "deepfm", "fm", "lr")}
    assert result["fm"] > result["lr"] + 0.01, result
    assert result["deepfm"] > result["fm"] + 0.002, result
    assert result["truth"] > result["deepfm"], result


def _segment_auc(holdout: dict[str, np.ndarray], segment: str, model: str) -> float:
    sel = holdout[segment]
    return auc(holdout["labels"][sel], holdout[model][sel])


def test_planted_hour_by_category_interaction_is_learned(holdout: dict[str, np.ndarray]) -> None:
    """Within food ads, meal hours decide the click rate: a model that learned the
    hour x category interaction ranks food impressions much better than LR."""
    seg = {m: _segment_auc(holdout, "food", m) for m in ("truth", "deepfm", "fm", "lr")}
    food = holdout["food"]
    lift = {
        m: holdout[m][food & holdout["meal"]].mean() / holdout[m][food & ~holdout["meal"]].mean()
        for m in ("truth", "deepfm", "fm", "lr")
    }
    for m in ("fm", "deepfm"):
        assert seg[m] > seg["lr"] + 0.02, seg
        assert lift[m] > 1.5 and lift["lr"] < 1.3, lift
    # Closes most of the gap between LR and the truth within the segment.
    assert seg["deepfm"] - seg["lr"] > 0.5 * (seg["truth"] - seg["lr"])


def test_planted_order_three_interactions_are_learned(holdout: dict[str, np.ndarray]) -> None:
    """gender x age x category segments click more than the rest of their categories."""
    seg = {m: _segment_auc(holdout, "triple_category", m) for m in ("truth", "deepfm", "fm", "lr")}
    cat, planted = holdout["triple_category"], holdout["triple"]
    lift = {
        m: holdout[m][cat & planted].mean() / holdout[m][cat & ~planted].mean()
        for m in ("truth", "deepfm", "fm", "lr")
    }
    assert seg["deepfm"] > seg["fm"] > seg["lr"] + 0.02, seg
    assert lift["deepfm"] > lift["fm"] > lift["lr"], lift
    # DeepFM recovers most of the planted lift that LR cannot see.
    assert lift["deepfm"] - lift["lr"] > 0.5 * (lift["truth"] - lift["lr"]), lift
