from __future__ import annotations

import numpy as np
import pytest

from model.ctr_metrics import Scores, auc


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


def test_saved_scores_restore_to_the_same_metrics_exact_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    monkeypatch.setattr(Scores, "EXACT_LIMIT", 1_000)
    labels = (rng.random(1_500) < 0.2).astype(np.float32)
    probs = np.clip(0.2 + 0.3 * (labels - 0.2) + rng.normal(0, 0.1, 1_500), 0.01, 0.99)
    for n in (600, 1_500):  # exact, then past the limit
        scores = Scores()
        scores.add(labels[: n // 2], probs[: n // 2])
        scores.add(labels[n // 2 : n], probs[n // 2 : n])
        back = Scores.restored(*scores.state())
        assert back.exact == scores.exact == (n <= 1_000)
        assert back.metrics() == scores.metrics()
        assert back.auc_bound == scores.auc_bound
        back.add(labels[:10], probs[:10])  # and it goes on counting
        assert back.count == n + 10
    scalars, arrays = Scores().state()
    arrays["labels"] = np.zeros(3, np.float32)  # a state that disagrees with itself
    with pytest.raises(ValueError, match="3 labels"):
        Scores.restored(scalars, arrays)
