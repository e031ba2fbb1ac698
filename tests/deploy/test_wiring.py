from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploy.runtime.errors import ConfigError
from deploy.settings.train import TrainSettings
from deploy.wiring import admission_for, embedding_source
from model.features import FieldSpec
from model.hashing import DEFAULT, feature_id
from model.trainer import TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.cache import CachedEmbeddings

FIELDS = (FieldSpec("user_id"), FieldSpec("hour"))


def test_per_field_admission_thresholds() -> None:
    admission = admission_for(TrainSettings(admit_after_fields="user_id:3"), FIELDS)
    assert admission is not None
    assert admission.thresholds.tolist() == [3, 1]
    ids = np.array([feature_id("user_id", "u1"), feature_id("hour", "7")])
    fields = np.array([0, 1])
    first = admission(ids, fields, count=True)
    assert first.tolist() == [feature_id("user_id", DEFAULT), ids[1]]
    assert admission_for(TrainSettings(), FIELDS) is None
    with pytest.raises(ConfigError, match=r"lacks: \['city'\]"):
        admission_for(TrainSettings(admit_after_fields="city:2"), FIELDS)


def test_rocksdb_source_per_model_directory(tmp_path: Path) -> None:
    layout = row_layout(ModelConfig(name="fm", k=4), TrainerConfig())
    assert embedding_source(TrainSettings(), layout, "fm", tmp_path) is None
    source = embedding_source(TrainSettings(store="rocksdb", cache_rows=64), layout, "fm", tmp_path)
    assert isinstance(source, CachedEmbeddings)
    assert source.store.path == tmp_path / "fm" and source.capacity == 64
    source.store.close()
