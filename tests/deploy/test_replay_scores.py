from __future__ import annotations

import numpy as np
import pytest

from deploy.batch.replay.protocol import Scores
from model.ctr_metrics import auc


def test_scores_are_exact_until_the_limit_then_bounded_streaming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    monkeypatch.setattr(Scores, "EXACT_LIMIT", 1_000)
    scores = Scores()
    labels = (rng.random(3_000) < 0.3).astype(np.float32)
    probs = np.clip(0.3 + 0.2 * (labels - 0.3) + rng.normal(0, 0.15, 3_000), 0.01, 0.99)
    scores.add(labels[:800], probs[:800])
    assert scores.exact and scores.metrics().auc == pytest.approx(auc(labels[:800], probs[:800]))
    scores.add(labels[800:], probs[800:])
    assert not scores.exact  # past the limit: memory stops growing
    exact = auc(labels, probs)
    assert abs(scores.metrics().auc - exact) <= scores.streaming.auc_bound + 1e-12
    assert scores.metrics().count == 3_000
