"""One contract for every implementation of model's `EmbeddingSource` Protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from model.embeddings import EmbeddingSource, InMemoryEmbeddings
from model.features import FeatureEncoder, FeatureSchema, FieldSpec
from model.row_layout import RowLayout, initial_rows
from model.slotmap import SlotMap
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.cache import CachedEmbeddings
from store.row_store import RowStore

LAYOUT = row_layout(ModelConfig(name="deepfm", k=4), TrainerConfig())
SEED = 5
Factory = Callable[[RowLayout], EmbeddingSource]


def _memory(tmp: Path, layout: RowLayout) -> EmbeddingSource:
    return InMemoryEmbeddings(layout, seed=SEED)


def _cached(tmp: Path, layout: RowLayout) -> EmbeddingSource:
    # Smaller than the id space of the tests: rows are evicted and reloaded constantly.
    store = RowStore(tmp / f"cached-{layout.width}", layout.width)
    return CachedEmbeddings(
        store, partial(initial_rows, layout=layout, seed=SEED), capacity=300, slot_index=SlotMap
    )


@pytest.fixture(params=["memory", "rocksdb+cache"])
def make_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    build = {"memory": _memory, "rocksdb+cache": _cached}[request.param]
    yield partial(build, tmp_path)


def ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def test_emerging_ids_read_their_initial_rows(make_source: Factory) -> None:
    source = make_source(LAYOUT)
    assert source.row_width == LAYOUT.width
    got = source.lookup(ids(3, -9, 2**62))
    want = initial_rows(np.array([3, -9, 2**62]), LAYOUT, SEED)
    torch.testing.assert_close(got, torch.from_numpy(want))


def test_updates_round_trip_and_untouched_ids_stay(make_source: Factory) -> None:
    source = make_source(LAYOUT)
    batch = ids(1, 2, 3)
    rows = source.lookup(batch)
    rows += 0.5
    source.update(batch, rows)
    torch.testing.assert_close(source.lookup(ids(3, 1)), rows[[2, 0]])
    # An id that disappears from the stream keeps its last value.
    source.update(ids(1), source.lookup(ids(1)) * 0)
    torch.testing.assert_close(source.lookup(ids(2)), rows[[1]])


def test_scoring_never_stores_rows(make_source: Factory) -> None:
    source = make_source(LAYOUT)
    peek = source.lookup(ids(7), create=False)
    torch.testing.assert_close(peek, torch.from_numpy(initial_rows(np.array([7]), LAYOUT, SEED)))
    if isinstance(source, CachedEmbeddings):
        source.flush()
    if isinstance(source, CachedEmbeddings):
        assert source.store.count() == 0
    else:
        assert len(source) == 0  # type: ignore[arg-type]


SCHEMA = FeatureSchema((FieldSpec("a"), FieldSpec("b"), FieldSpec("tags", "multi")))


def test_training_through_any_source_is_the_same(make_source: Factory, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    events = [
        {"a": f"a{rng.integers(30)}", "b": f"b{rng.integers(300)}", "tags": [f"t{rng.integers(5)}"]}
        for _ in range(2048)
    ]
    labels = (rng.random(2048) < 0.3).astype(np.float32)
    enc = FeatureEncoder(SCHEMA)
    batches = [(enc.encode(events[i : i + 256]), labels[i : i + 256]) for i in range(0, 2048, 256)]
    config = ModelConfig(name="deepfm", k=4, neurons=16)
    results = []
    for source in (InMemoryEmbeddings(LAYOUT, seed=SEED), make_source(LAYOUT)):
        trainer = OnlineTrainer(config, 3, TrainerConfig(device="cpu", seed=SEED), source=source)
        losses = [trainer.learn_many(b, y) for b, y in batches]
        results.append((losses, trainer.predict_proba_many(batches[0][0])))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
