from __future__ import annotations

import numpy as np
import pytest

from model.rows import RowLayout, initial_rows
from model.sparse_optim import make_sparse_optimizer

LAYOUT = RowLayout(1, 2, 5, make_sparse_optimizer("adagrad", None, 0.0), init_std=0.02)


def test_initial_latent_values_are_normal_with_the_configured_spread() -> None:
    rows = initial_rows(np.arange(40_000, dtype=np.int64) * 7919, LAYOUT, seed=1)
    latent = rows[:, 1 : LAYOUT.params]
    assert np.all(rows[:, 0] == 0.0) and np.all(rows[:, LAYOUT.params :] == 0.0)
    assert abs(float(latent.mean())) < 2e-4
    assert float(latent.std()) == pytest.approx(0.02, rel=0.01)
    z = np.abs(latent) / 0.02
    # the normal's share within one and two standard deviations, per latent column
    assert np.allclose((z < 1).mean(axis=0), 0.6827, atol=0.01)
    assert np.allclose((z < 2).mean(axis=0), 0.9545, atol=0.005)
    # the values of a row are independent of each other
    corr = np.corrcoef(latent.T)
    assert np.abs(corr - np.eye(LAYOUT.params - 1)).max() < 0.03


def test_an_ids_row_depends_on_seed_and_id_only() -> None:
    ids = np.array([5, -3, 2**62], dtype=np.int64)
    alone = initial_rows(ids[1:2], LAYOUT, seed=4)
    among = initial_rows(np.concatenate([ids, np.arange(100)]), LAYOUT, seed=4)
    np.testing.assert_array_equal(alone[0], among[1])
    assert not np.array_equal(initial_rows(ids, LAYOUT, seed=5), among[:3])
