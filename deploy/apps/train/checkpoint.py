"""The trainer's checkpoint: one atomic RocksDB write of everything it has learned.

The dirty embedding rows (weights and per-row optimizer state), the dense
weights with Adam's state and the examples seen (`OnlineTrainer.state_dict`),
the admission sketch, the feature schema and model configuration, and the
`labeled` position per partition that all of it reflects go into one
WriteBatch (`CachedEmbeddings.flush`). A process killed at any moment leaves
the store at the last completed checkpoint, whose position is exactly where
its learning stopped.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deploy.apps.train.cutter import Positions
from deploy.runtime.errors import ConfigError
from model.features import FeatureSchema, FieldSpec
from model.trainer import OnlineTrainer, TrainerConfig
from model.zoo import ModelConfig
from store.admission import Admission
from store.cache import CachedEmbeddings
from store.row_store import RowStore

TRAINER, SCHEMA, MODEL, ADMISSION = "trainer", "schema", "model", "admission"
_TIMES = ("newest_ms", "evict_next_ms", "evicting_ms")


@dataclass(frozen=True)
class Resumed:
    """What a store says a restarted trainer starts from."""

    positions: Positions
    examples_seen: int
    schema: FeatureSchema | None
    newest_ms: int | None = None
    evict_next_ms: int | None = None  # when the next store eviction is due
    evicting_ms: int | None = None  # an eviction at this event time was interrupted


def model_description(model: ModelConfig, trainer: TrainerConfig) -> dict[str, Any]:
    """What must not change under a store: the model's shape and the row layout's
    optimizers (the device may)."""
    rows = {k: v for k, v in dataclasses.asdict(trainer).items() if k != "device"}
    return {"model": dataclasses.asdict(model), "trainer": rows}


def schema_to_json(schema: FeatureSchema) -> list[dict[str, str]]:
    return [dataclasses.asdict(f) for f in schema.fields]


def schema_from_json(raw: list[dict[str, Any]]) -> FeatureSchema:
    return FeatureSchema(tuple(FieldSpec(**f) for f in raw))


def save(
    source: CachedEmbeddings,
    positions: Positions,
    times: Mapping[str, int | None],
    learned: tuple[OnlineTrainer, FeatureSchema, Admission | None] | None,
) -> int:
    """Writes the checkpoint; returns the rows it wrote."""
    return source.flush(*state(positions, times, learned))


def state(
    positions: Positions,
    times: Mapping[str, int | None],
    learned: tuple[OnlineTrainer, FeatureSchema, Admission | None] | None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The position and the extras a checkpoint writes with the rows. `times`: the
    event times a restart needs (`newest_ms`, `evict_next_ms`, `evicting_ms`, read
    back in `Resumed`). `learned` None: nothing was learned yet (every event so far
    was dead-lettered), only the position moves."""
    extras: dict[str, bytes] = {}
    seen = 0
    if learned is not None:
        trainer, schema, admission = learned
        seen = trainer.examples_seen
        buffer = io.BytesIO()
        torch.save(trainer.state_dict(), buffer)
        extras[TRAINER] = buffer.getvalue()
        extras[SCHEMA] = json.dumps(schema_to_json(schema)).encode()
        description = model_description(trainer.model_config, trainer.config)
        extras[MODEL] = json.dumps(description).encode()
        if admission is not None:
            sketch = io.BytesIO()
            np.save(sketch, admission.sketch.state())
            extras[ADMISSION] = sketch.getvalue()
    position = {
        "labeled": {str(p): list(at) for p, at in sorted(positions.items())},
        "examples_seen": seen,
        **{name: times.get(name) for name in _TIMES},
    }
    return position, extras


def resume_point(store: RowStore, model: ModelConfig, trainer: TrainerConfig) -> Resumed:
    """The store's position and schema; a store written for another model is refused,
    naming both."""
    position = store.position()
    if position is None or "labeled" not in position:
        if store.holds_rows():
            raise ConfigError(
                f"the store at {store.path} holds rows but no trainer checkpoint (a replay's "
                "store?): give the trainer its own --store-dir"
            )
        return Resumed({}, 0, None)
    positions = {int(p): (int(o), int(i)) for p, (o, i) in position["labeled"].items()}
    raw_model, raw_schema = store.extra(MODEL), store.extra(SCHEMA)
    times = {name: position.get(name) for name in _TIMES}
    if raw_model is None or raw_schema is None:
        return Resumed(positions, 0, None, **times)
    recorded = json.loads(raw_model)
    wanted = json.loads(json.dumps(model_description(model, trainer)))
    if recorded != wanted:
        changed = sorted(_differences(recorded, wanted))
        raise ConfigError(
            f"the store at {store.path} was trained as {_show(recorded, changed)}, but this "
            f"run asks for {_show(wanted, changed)}: start it with the same settings, or "
            "point --store-dir at a new directory"
        )
    schema = schema_from_json(json.loads(raw_schema))
    return Resumed(positions, int(position["examples_seen"]), schema, **times)


def restore(store: RowStore, trainer: OnlineTrainer, admission: Admission | None) -> None:
    """Loads the dense state (and the admission counts) the last checkpoint wrote."""
    raw = store.extra(TRAINER)
    if raw is None:
        return
    trainer.load_state_dict(torch.load(io.BytesIO(raw), weights_only=True))
    sketch = store.extra(ADMISSION)
    if admission is not None and sketch is not None:
        admission.sketch.restore(np.load(io.BytesIO(sketch)))


def _differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key in set(a) | set(b):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.add(f"{prefix}{key}")
    return out


def _show(description: dict[str, Any], keys: list[str]) -> str:
    def at(path: str) -> Any:
        value: Any = description
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return ", ".join(f"{k}={at(k)!r}" for k in keys)


def open_trained(
    store: RowStore,
    model: ModelConfig,
    config: TrainerConfig,
    source: CachedEmbeddings,
    admission_for: Callable[[FeatureSchema], Admission | None],
) -> tuple[OnlineTrainer, FeatureSchema]:
    """The model a store's last checkpoint holds, to score with (over `source`, a cache
    of `store`), and its feature schema."""
    resumed = resume_point(store, model, config)
    if resumed.schema is None:
        raise ConfigError(f"the store at {store.path} holds no trained model yet")
    admission = admission_for(resumed.schema)
    trainer = OnlineTrainer(model, len(resumed.schema.fields), config, source, admission)
    restore(store, trainer, admission)
    return trainer, resumed.schema
