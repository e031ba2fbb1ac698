from __future__ import annotations

import numpy as np
import pytest

from model.row_layout import RowLayout, initial_rows
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


def test_initial_rows_keep_their_values_across_versions() -> None:
    # A stored model's evicted rows come back as these values: they must not drift
    # (a ulp of tolerance for the machine's vectorized log/sin/cos).
    rows = initial_rows(np.array([5, -3, 2**62], dtype=np.int64), LAYOUT, seed=4)
    pinned = [
        [0.0004304578760638833, 0.0068034823052585125, 0.016194820404052734,
         0.04705365374684334, -0.012645464390516281, -0.00644161831587553,
         0.03435815870761871, -0.005834665149450302, -0.009124524891376495,
         0.011012597940862179],
        [-0.011048815213143826, -0.02609850838780403, 0.029829800128936768,
         -0.022043146193027496, -0.01370761264115572, 0.006714780814945698,
         -0.0004439412150532007, 0.02395469695329666, -0.022514717653393745,
         -9.607771062292159e-05],
        [-0.022453725337982178, -0.03775130584836006, -0.0030691546853631735,
         -0.02754293940961361, -0.012075801379978657, -0.021388625726103783,
         0.003129770513623953, 0.012051205150783062, -0.00022487879323307425,
         -0.030607299879193306],
    ]  # fmt: skip
    np.testing.assert_allclose(rows[:, 1 : LAYOUT.params], pinned, rtol=1e-6, atol=1e-9)
