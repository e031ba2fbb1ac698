"""Opening a published snapshot to score with: verified, promoted, read-only.

The scorer is the trainer's own `OnlineTrainer` over the snapshot's rows (a
read-only RocksDB checkpoint behind a bounded read cache) with the dense weights
of `dense.pt`, so a snapshot scores exactly what the trainer scored when it was
taken. Ids the snapshot never learned read the initial row the trainer would
create, or their field's shared row under admission.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy.apps.train.checkpoint import ADMISSION, schema_from_json
from deploy.apps.train.publish import DENSE, LATEST, ROWS, Verified, verify
from deploy.runtime.errors import DeployError
from deploy.wiring import admission_over, cached_source
from model.features import EncodedBatch, FeatureEncoder, FieldSpec
from model.trainer import OnlineTrainer, TrainerConfig, row_layout
from model.zoo import ModelConfig
from store.admission import Admission, CountMinSketch
from store.cache import CachedEmbeddings
from store.errors import StoreError
from store.row_store import RowStore


class SnapshotError(DeployError):
    """A snapshot that must not be served: unreadable, unverified, or not promoted."""


@dataclass
class Loaded:
    """One snapshot, open for scoring. Not thread-safe: one thread scores at a time."""

    version: int
    path: Path
    manifest: dict[str, Any]
    trainer: OnlineTrainer
    encoder: FeatureEncoder
    source: CachedEmbeddings
    admission: Admission | None

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.encoder.schema.names)

    def score(self, batch: EncodedBatch) -> tuple[np.ndarray, np.ndarray]:
        """Click probabilities, and per field (the encoder's order) the entries whose id
        the snapshot never learned (read as an initial or shared row)."""
        scores = self.trainer.predict_proba_many(batch)
        fields = batch.slot % batch.num_fields
        read = batch.ids
        if self.admission is not None:
            read = self.admission(batch.ids, fields, count=False)
        unseen = (read != batch.ids) | np.isin(read, self.source.last_unseen)
        return scores, np.bincount(fields[unseen], minlength=batch.num_fields)

    def close(self) -> None:
        self.source.store.close()


def latest(model_dir: Path) -> int | None:
    """The version `LATEST` names, or None when nothing was promoted yet."""
    try:
        text = (model_dir / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read {model_dir / LATEST}: {exc}") from exc
    if not text.isdigit():
        raise SnapshotError(f"{model_dir / LATEST} names no version: {text[:40]!r}")
    return int(text)


def load(
    model_dir: Path,
    version: int,
    cache_rows: int,
    promoted_only: bool = True,
    known: Verified | None = None,
) -> Loaded:
    """The snapshot `version` under `model_dir`, checked file by file against its
    manifest; refused (SnapshotError) when anything does not match, when it was not
    promoted (unless not `promoted_only`: the evaluator judges refused ones too), or
    when a path leaves its directory."""
    path = model_dir / f"{version:012d}"
    try:
        manifest = verify(path, known)
    except DeployError as exc:
        raise SnapshotError(str(exc)) from exc
    _check_contained(path, manifest)
    gate = manifest.get("gate", {})
    if promoted_only and not gate.get("promoted"):
        raise SnapshotError(
            f"snapshot {version} at {path} was refused by the publish gate "
            f"({'; '.join(gate.get('reasons', []))}): it is never served"
        )
    try:
        described = manifest["model"]
        model = ModelConfig(**described["model"])
        config = TrainerConfig(**{**described["trainer"], "device": "cpu"})
        schema = schema_from_json(manifest["schema"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"the manifest of {path} does not describe a model: {exc}") from exc
    layout = row_layout(model, config)
    try:
        store = RowStore(path / ROWS, layout.width, read_only=True)
    except StoreError as exc:
        raise SnapshotError(f"cannot open the rows of {path}: {exc}") from exc
    try:
        source = cached_source(store, layout, config.seed, cache_rows, cache_reads=True)
        encoder = FeatureEncoder(schema)
        admission = _admission(manifest, encoder.fields, config.seed, store)
        trainer = OnlineTrainer(model, len(schema.fields), config, source, admission)
        dense = torch.load(path / DENSE, map_location="cpu", weights_only=True)
        trainer.model.load_state_dict(dense)
        trainer.model.eval()
        trainer.examples_seen = int(manifest["examples_seen"])
    except SnapshotError:
        store.close()
        raise
    except Exception as exc:
        store.close()
        raise SnapshotError(f"cannot load the model of {path}: {exc}") from exc
    return Loaded(version, path, manifest, trainer, encoder, source, admission)


def _check_contained(path: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest names lies inside the snapshot (no `..`, no absolute
    path, no symbolic link out)."""
    root = path.resolve()
    for name in manifest.get("files", {}):
        target = (path / name).resolve()
        if Path(name).is_absolute() or not target.is_relative_to(root):
            raise SnapshotError(f"the manifest of {path} names {name!r}, outside the snapshot")
    for entry in path.rglob("*"):
        if entry.is_symlink():
            raise SnapshotError(f"{entry} is a symbolic link: a snapshot holds plain files")


def _admission(
    manifest: dict[str, Any], fields: tuple[FieldSpec, ...], seed: int, store: RowStore
) -> Admission | None:
    """The trainer's admission, so that an id it had not admitted reads its field's
    shared row here too: thresholds from the manifest, counts from the rows' extras."""
    recorded = manifest.get("admission")
    if not recorded:
        return None
    thresholds = np.array(recorded["thresholds"], dtype=np.int64)
    if len(thresholds) != len(fields):
        raise SnapshotError(
            f"the manifest has {len(thresholds)} admission thresholds for {len(fields)} fields"
        )
    raw = store.extra(ADMISSION)
    if raw is None:
        raise SnapshotError(f"the rows at {store.path} hold no admission counts")
    table = np.load(io.BytesIO(raw))
    sketch = CountMinSketch(width=table.shape[1], depth=table.shape[0], seed=seed)
    sketch.restore(table)
    return admission_over(thresholds, fields, sketch)
