"""CUDA checks, skipped without a GPU: run them in one go on a machine that has one
(`.venv/bin/pytest tests/gpu -v`; see tests/gpu/run.sh).

The same batches on the CPU and on CUDA, through the RocksDB store and its
hot-row cache (the slab on the GPU), give the same model within float
tolerance; and `fmstream bench train --device cuda --store rocksdb` runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.batch.replay.inputs import CRITEO_SCHEMA
from deploy.bench.train import criteo_like_events
from deploy.wiring import cached_source
from model.features import EncodedBatch, FeatureEncoder
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.row_store import RowStore
from tests.clikit import run_fmstream

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _trained(device: str, batches: list[tuple[EncodedBatch, np.ndarray]], root: Path) -> np.ndarray:
    # No dropout: CPU and CUDA draw their masks from different generators.
    config = ModelConfig(name="deepfm", dropout_keep=1.0)
    trainer_config = TrainerConfig(device=device)
    layout = row_layout(config, trainer_config)
    store = RowStore(root / device.replace(":", "-"), layout.width)
    try:
        source = cached_source(store, layout, 0, 50_000, device)
        trainer = OnlineTrainer(config, len(CRITEO_SCHEMA.fields), trainer_config, source)
        for encoded, labels in batches[:-1]:
            trainer.learn_many(encoded, labels)
        source.flush({"steps": len(batches) - 1})  # rows through the store and back
        return trainer.predict_proba_many(batches[-1][0])
    finally:
        store.close()


def test_cpu_and_cuda_learn_the_same_model_through_the_store(tmp_path: Path) -> None:
    events, labels = criteo_like_events(4096 * 11, seed=3)
    encoder = FeatureEncoder(CRITEO_SCHEMA)
    batches = [
        (encoder.encode(events[i : i + 4096]), labels[i : i + 4096])
        for i in range(0, len(labels), 4096)
    ]
    on_cpu = _trained("cpu", batches, tmp_path)
    on_cuda = _trained("cuda", batches, tmp_path)
    assert np.abs(on_cpu - on_cuda).max() < 1e-3
    assert on_cpu.std() > 1e-3  # it learned something to agree on


def test_the_training_benchmark_runs_on_cuda_with_the_store() -> None:
    ran = run_fmstream(
        "bench", "train", "--device", "cuda", "--store", "rocksdb", "--bench-models",
        "deepfm", "--batches", "4096", "--steps", "20", "--repeat", "1",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["device"] == "cuda"
    assert result["results"][0]["examples_per_s"] > 0
    print(json.dumps(result["results"][0], indent=1))  # the figure for the closing note
